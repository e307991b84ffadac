using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// How the next token is chosen: greedy (temperature 0 or top-k 1, the default), or a draw from the softmax of
/// logits / temperature, cut to the <see cref="TopK"/> most likely tokens (0: no cut) and then to the smallest set
/// whose probability reaches <see cref="TopP"/> (1: no cut), as Hugging Face's generate() orders its warpers.
/// </summary>
public sealed record SamplingOptions(double Temperature = 0, int TopK = 0, double TopP = 1, ulong Seed = 0)
{
    /// <summary>Greedy decoding: the most likely token, lowest index on ties.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>True when every draw is the argmax (no randomness is used).</summary>
    public bool IsGreedy => Temperature == 0 || TopK == 1;

    /// <summary>What is wrong with these options, naming the option (e.g. "temperature must be ..."), or null.</summary>
    public string? Problem()
    {
        if (!double.IsFinite(Temperature) || Temperature < 0) return $"temperature must be a number >= 0 (0 is greedy), got {Temperature}";
        if (TopK < 0) return $"top-k must be >= 0 (0 keeps every token), got {TopK}";
        if (!double.IsFinite(TopP) || TopP <= 0 || TopP > 1) return $"top-p must be in (0, 1] (1 keeps every token), got {TopP}";
        return null;
    }

    /// <summary>One line for logs: "greedy" or the sampling parameters and seed.</summary>
    public string Describe() => IsGreedy ? "greedy" : string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"temperature {Temperature}, top-k {(TopK == 0 ? "off" : TopK)}, top-p {TopP}, seed {Seed}");
}

/// <summary>
/// Chooses tokens from logits by <see cref="SamplingOptions"/>. Draw <c>step</c> of stream <c>stream</c> (one stream
/// per request) uses a counter-based random number, a pure function of (seed, stream, step): every rank of a
/// parallel run that holds the same logits picks the same token without exchanging any state, and a rerun with the
/// same seed repeats every draw.
/// </summary>
public sealed class Sampler
{
    private readonly ulong _seed;
    private readonly long _streamBase;

    /// <summary>A sampler for one request's stream of draws.</summary>
    public Sampler(SamplingOptions options, int stream = 0)
    {
        if (options.Problem() is { } problem) throw new ArgumentException(problem, nameof(options));
        if (stream < 0) throw new ArgumentOutOfRangeException(nameof(stream), "must be >= 0");
        Options = options;
        _seed = options.Seed;
        // Streams take disjoint counter ranges, so requests never share a draw.
        _streamBase = (long)stream << 32;
    }

    /// <summary>The options this sampler draws by.</summary>
    public SamplingOptions Options { get; }

    /// <summary>The token after <paramref name="logits"/> (one row, vocab wide) at generation step <paramref name="step"/>.</summary>
    public int Next(ReadOnlySpan<float> logits, int step)
    {
        if (logits.Length == 0) throw new ArgumentException("logits are empty", nameof(logits));
        if (Options.IsGreedy) return Argmax(logits);
        var (order, probabilities, kept) = Candidates(logits, Options);
        double u = SeededRandom.Unit(_seed, _streamBase + step);
        double cumulative = 0;
        for (int i = 0; i < kept; i++)
        {
            cumulative += probabilities[i];
            if (u < cumulative) return order[i];
        }
        // Rounding left the sum a hair under 1 and u above it: the last kept token.
        return order[kept - 1];
    }

    /// <summary>
    /// The distribution draws come from: probability per token (zero for tokens the cuts removed). For greedy options,
    /// 1 at the argmax.
    /// </summary>
    public static double[] Distribution(ReadOnlySpan<float> logits, SamplingOptions options)
    {
        var result = new double[logits.Length];
        if (options.IsGreedy)
        {
            result[Argmax(logits)] = 1;
            return result;
        }
        var (order, probabilities, kept) = Candidates(logits, options);
        for (int i = 0; i < kept; i++) result[order[i]] = probabilities[i];
        return result;
    }

    /// <summary>The most likely token, lowest index on ties: the argmax kernel's and the reference's rule.</summary>
    public static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int j = 1; j < logits.Length; j++) if (logits[j] > logits[best]) best = j;
        return best;
    }

    // Tokens by falling logit (lower index first on ties), their renormalised probabilities after both cuts, and how
    // many survive; the fixed order makes the draw independent of the sort's internals.
    private static (int[] Order, double[] Probabilities, int Kept) Candidates(ReadOnlySpan<float> logits, SamplingOptions o)
    {
        int n = logits.Length;
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var values = logits.ToArray();
        Array.Sort(order, (a, b) =>
        {
            int c = Key(values[b]).CompareTo(Key(values[a]));
            return c != 0 ? c : a.CompareTo(b);
        });
        int kept = o.TopK > 0 ? Math.Min(o.TopK, n) : n;
        var probabilities = new double[kept];
        double max = Key(values[order[0]]), sum = 0;
        for (int i = 0; i < kept; i++)
        {
            probabilities[i] = Math.Exp((Key(values[order[i]]) - max) / o.Temperature);
            sum += probabilities[i];
        }
        for (int i = 0; i < kept; i++) probabilities[i] /= sum;
        if (o.TopP < 1)
        {
            // The smallest prefix of the sorted tokens whose mass reaches top-p.
            double cumulative = 0;
            int prefix = 0;
            while (prefix < kept && cumulative < o.TopP) cumulative += probabilities[prefix++];
            kept = Math.Max(1, prefix);
            for (int i = 0; i < kept; i++) probabilities[i] /= cumulative;
        }
        return (order, probabilities, kept);
    }

    // NaN logits sort last and get no probability.
    private static double Key(float logit) => float.IsNaN(logit) ? double.NegativeInfinity : logit;
}
