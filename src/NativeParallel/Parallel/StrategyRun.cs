using System.Diagnostics;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Check;
using NativeParallel.Models;

namespace NativeParallel.Parallel;

/// <summary>A layout: tensor × pipeline × sequence × data parallel degrees (world = their product).</summary>
public sealed record Strategy(int Tp = 1, int Pp = 1, int Sp = 1, int Dp = 1, int Ep = 1, bool MegatronSp = false)
{
    /// <summary>Ranks the layout needs.</summary>
    public int Ranks => Tp * Pp * Sp * Dp * Ep;

    /// <summary>Replicas serving different requests: data-parallel ones, and the ranks of an expert-parallel group.</summary>
    public int Replicas => Dp * Ep;

    /// <summary>e.g. tp=2,pp=2 (single for one rank).</summary>
    public string Name
    {
        get
        {
            var parts = new List<string>();
            if (Tp > 1) parts.Add(MegatronSp ? $"tp+sp={Tp}" : $"tp={Tp}");
            if (Pp > 1) parts.Add($"pp={Pp}");
            if (Sp > 1) parts.Add($"sp={Sp}");
            if (Dp > 1) parts.Add($"dp={Dp}");
            if (Ep > 1) parts.Add($"ep={Ep}");
            return parts.Count == 0 ? "single" : string.Join(",", parts);
        }
    }

    /// <summary>Parses "tp=2,pp=2" (missing axes are 1).</summary>
    public static Strategy Parse(string text)
    {
        var s = new Strategy();
        var seen = new HashSet<string>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=', StringSplitOptions.TrimEntries);
            if (kv.Length != 2 || !int.TryParse(kv[1], out int n) || n < 1) throw new ArgumentException($"bad strategy part '{part}': expected e.g. tp=2");
            string axis = kv[0].ToLowerInvariant();
            if (!seen.Add(axis == "tp+sp" ? "tp" : axis)) throw new ArgumentException($"strategy '{text}' gives the {(axis == "tp+sp" ? "tp" : axis)} axis twice");
            s = axis switch
            {
                "tp" => s with { Tp = n },
                "tp+sp" => s with { Tp = n, MegatronSp = true },
                "pp" => s with { Pp = n },
                "sp" => s with { Sp = n },
                "dp" => s with { Dp = n },
                "ep" => s with { Ep = n },
                _ => throw new ArgumentException($"unknown axis '{kv[0]}': expected tp, tp+sp (Megatron's TP with sequence parallelism), pp, sp, dp or ep"),
            };
        }
        return s;
    }

    /// <summary>
    /// Why this layout cannot run <paramref name="requests"/> requests of <paramref name="promptTokens"/> tokens on
    /// a model of shape <paramref name="config"/>, or null when it can; checked before any work starts.
    /// </summary>
    public string? Check(LlamaConfig config, int promptTokens, int requests)
    {
        if (ParallelLayout.Check(config, Tp, Pp, Sp, Ep, MegatronSp) is { } problem) return problem;
        if (Sp > 1 && promptTokens % Sp != 0) return $"{promptTokens} prompt tokens must divide by sp ({Sp})";
        if (MegatronSp && Tp > 1 && promptTokens % Tp != 0) return $"{promptTokens} prompt tokens must divide by tp ({Tp}) under tp+sp";
        if (requests % Replicas != 0) return $"{requests} requests must divide among {Replicas} replicas (dp x ep)";
        return null;
    }
}

/// <summary>What one strategy did, measured, and how it compares with the single-device run.</summary>
public sealed record StrategyResult(Strategy Strategy, long WeightBytesPerRank, long KvBytesPerRank, double BytesSentPerToken,
    double PrefillMs, double DecodeMsPerToken, double TokensPerSecond, double MaxLogitsError, bool TokensIdentical, bool RanksIdentical,
    int[][] Tokens)
{
    /// <summary>MoE routings dropped for lack of expert capacity, over all ranks.</summary>
    public long DroppedTokens { get; init; }

    /// <summary>Collectives of the run that went device-direct, over all ranks (0 on host-memory devices).</summary>
    public long DeviceDirectCalls { get; init; }

    /// <summary>Bytes of device tensors the run's collectives staged through host memory, over all ranks.</summary>
    public long StagedBytes { get; init; }
}

/// <summary>
/// Runs the model under a <see cref="Strategy"/> with ranks as threads of this process (or of a launched job), on
/// one device (the CPU by default; ranks may share a GPU, their collectives device-direct where the collective allows):
/// prefill of every request, then greedy decode, and compares logits and tokens with the single-device run.
/// </summary>
public static class StrategyRun
{
    /// <summary>
    /// The single-device run every strategy is checked against: prefill logits and generated tokens per prompt
    /// (greedy, or drawn by <paramref name="sampling"/> with request p on stream p).
    /// </summary>
    public static (float[][] Logits, int[][] Tokens, double PrefillMs, double DecodeMsPerToken) Single(IDevice device, LlamaWeights weights, int[][] prompts, int newTokens,
        SamplingOptions? sampling = null)
    {
        var logits = new float[prompts.Length][];
        var tokens = new int[prompts.Length][];
        double prefill = 0, decode = 0;
        using var model = new LlamaModel(device, weights);
        for (int p = 0; p < prompts.Length; p++)
        {
            model.Reset();
            var sampler = new Sampler(sampling ?? SamplingOptions.Greedy, p);
            var clock = Stopwatch.StartNew();
            using (var l = model.Forward(prompts[p]))
            {
                logits[p] = l.ToFloats();
                tokens[p] = new int[newTokens];
                tokens[p][0] = model.NextToken(l, sampler, 0);
            }
            prefill += clock.Elapsed.TotalMilliseconds;
            clock.Restart();
            for (int i = 1; i < newTokens; i++)
            {
                using var l = model.Forward([tokens[p][i - 1]]);
                tokens[p][i] = model.NextToken(l, sampler, i);
            }
            decode += clock.Elapsed.TotalMilliseconds;
        }
        return (logits, tokens, prefill, newTokens > 1 ? decode / (prompts.Length * (newTokens - 1)) : 0);
    }

    /// <summary>Runs <paramref name="strategy"/> on thread ranks and checks it against <paramref name="reference"/>.</summary>
    public static StrategyResult Run(LlamaWeights weights, Strategy strategy, int[][] prompts, int newTokens,
        (float[][] Logits, int[][] Tokens) reference, TimeSpan? timeout = null, IDevice? device = null, SamplingOptions? sampling = null)
    {
        int n = strategy.Ranks;
        var world = ProcessGroup.CreateThreadGroup(n, "world", timeout ?? TimeSpan.FromMinutes(2));
        var results = new StrategyResult?[n];
        var failures = new Exception?[n];
        var threads = Enumerable.Range(0, n).Select(r => new Thread(() =>
        {
            try { results[r] = RunOnGroup(world[r], weights, strategy, prompts, newTokens, reference, device, sampling); }
            catch (Exception e) { failures[r] = e; }
        }) { Name = $"rank {r}" }).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        foreach (var g in world) g.Dispose();
        if (failures.FirstOrDefault(f => f is not null) is { } failure)
            throw new InvalidOperationException($"strategy {strategy.Name} failed: {failure.Message}", failure);
        return results[0]!;
    }

    /// <summary>
    /// This rank's part of a strategy run over <paramref name="world"/> (threads or processes; its size must be
    /// the strategy's rank count). Every rank gathers every rank's logits and tokens and returns the same result,
    /// checked against <paramref name="reference"/>. Tokens are greedy, or drawn by <paramref name="sampling"/> (request p
    /// on stream p, as <see cref="Single"/> draws them, so the reference's tokens are the ones to match).
    /// </summary>
    public static StrategyResult RunOnGroup(ProcessGroup world, LlamaWeights weights, Strategy strategy, int[][] prompts, int newTokens,
        (float[][] Logits, int[][] Tokens) reference, IDevice? device = null, SamplingOptions? sampling = null)
    {
        using var traced = Tracer.BindRank(world.Rank); // this thread's kernels are the rank's in a trace
        if (world.Size != strategy.Ranks)
            throw new ArgumentException($"strategy {strategy.Name} needs {strategy.Ranks} ranks; the job has {world.Size}");
        int vocab = weights.Config.Vocab;
        if (prompts.Length % strategy.Replicas != 0)
            throw new ArgumentException($"{prompts.Length} requests must divide among {strategy.Replicas} replicas (dp x ep) so every expert-parallel rank steps together");
        RunRank(world, device ?? CpuDevice.Instance, weights, strategy, prompts, newTokens, sampling ?? SamplingOptions.Greedy, out var logits, out var tokens, out long weightBytes, out long kvBytes,
            out long sent, out double prefillMs, out double decodeMs, out long dropped, out long direct, out long staged);

        // Everyone's outputs to everyone: per prompt a flag, the logits (prompt x vocab) and the tokens.
        int perPrompt = 1 + prompts.Max(p => p.Length) * vocab + newTokens, n = world.Size;
        var packed = new float[prompts.Length * perPrompt];
        for (int p = 0; p < prompts.Length; p++)
        {
            if (logits[p] is not { } l) continue;
            int at = p * perPrompt;
            packed[at] = 1;
            l.CopyTo(packed, at + 1);
            for (int i = 0; i < newTokens; i++) packed[at + 1 + prompts[p].Length * vocab + i] = tokens[p][i];
        }
        var cpu = CpuDevice.Instance;
        using var mine = Tensors.Tensor.FromFloats(cpu, packed, Tensors.DType.F32, packed.Length);
        using var all = Tensors.Tensor.Empty(cpu, Tensors.DType.F32, packed.Length * n);
        world.AllGather(mine, all);
        var everything = all.ToFloats();
        long Max(long v) => Reduce(world, v, ReduceOp.Max);

        double maxError = 0;
        bool tokensOk = true, ranksOk = true;
        var finalTokens = new int[prompts.Length][];
        var firstLogits = new float[prompts.Length][];
        for (int r = 0; r < n; r++)
            for (int p = 0; p < prompts.Length; p++)
            {
                int at = (r * prompts.Length + p) * perPrompt;
                if (everything[at] != 1) continue;
                var l = everything.AsSpan(at + 1, prompts[p].Length * vocab).ToArray();
                var t = everything.AsSpan(at + 1 + prompts[p].Length * vocab, newTokens).ToArray().Select(v => (int)v).ToArray();
                maxError = Math.Max(maxError, ErrorBounds.RelativeError(l, Array.ConvertAll(reference.Logits[p], v => (double)v)));
                tokensOk &= t.SequenceEqual(reference.Tokens[p]);
                finalTokens[p] = t;
                if (firstLogits[p] is null) firstLogits[p] = l;
                else ranksOk &= firstLogits[p].AsSpan().SequenceEqual(l);
            }
        long totalSent = Reduce(world, sent, ReduceOp.Sum);
        double prefill = Max((long)(prefillMs * 1000)) / 1000.0, decode = Max((long)(decodeMs * 1000)) / 1000.0;
        int generated = prompts.Length * newTokens, processed = prompts.Sum(p => p.Length) + prompts.Length * (newTokens - 1);
        return new StrategyResult(strategy, Max(weightBytes), Max(kvBytes), (double)totalSent / processed, prefill,
            newTokens > 1 ? decode / ((newTokens - 1) * Math.Max(1, prompts.Length / strategy.Replicas)) : 0,
            generated / ((prefill + decode) / 1000), maxError, tokensOk, ranksOk, finalTokens)
        { DroppedTokens = Reduce(world, dropped, ReduceOp.Sum), DeviceDirectCalls = Reduce(world, direct, ReduceOp.Sum), StagedBytes = Reduce(world, staged, ReduceOp.Sum) };
    }

    private static long Reduce(ProcessGroup world, long value, ReduceOp op)
    {
        using var t = Tensors.Tensor.FromLongs(CpuDevice.Instance, [value], 1);
        world.AllReduce(t, op);
        return t.ToLongs()[0];
    }

    private static void RunRank(ProcessGroup world, IDevice device, LlamaWeights weights, Strategy s, int[][] prompts, int newTokens,
        SamplingOptions sampling, out float[][] logits, out int[][] tokens, out long weightBytes, out long kvBytes, out long sent, out double prefillMs, out double decodeMs,
        out long dropped, out long direct, out long staged)
    {
        // One mesh for every layout: data and expert parallelism are both replica axes here (dp·ep replicas, expert
        // groups of ep consecutive replicas), tensor parallelism innermost.
        using var mesh = DeviceMesh.Create(world, tp: s.Tp, pp: s.Pp, dp: s.Dp * s.Ep, ep: s.Ep, sp: s.Sp);
        var (tp, sp, ep, pp) = (mesh.Tp, mesh.Sp, mesh.Ep, mesh.Pp);
        int replica = mesh.DpRank;
        var layout = new ParallelLayout(weights.Config, tp, pp, sp, ep, megatronSequenceParallel: s.MegatronSp);
        using var model = new ParallelLlama(device, weights, layout);
        weightBytes = model.WeightBytes;
        // Data (and expert) parallelism: this replica serves every (dp·ep)-th request.
        var mine = Enumerable.Range(0, prompts.Length).Where(p => p % s.Replicas == replica).ToArray();
        logits = new float[prompts.Length][];
        tokens = new int[prompts.Length][];
        long sentBefore = mesh.BytesSent, directBefore = mesh.DeviceDirectCalls, stagedBefore = mesh.StagedBytes;
        world.Barrier();
        var clock = Stopwatch.StartNew();
        // Prefill every request; pipeline stages overlap because each stage moves on to the next request at once.
        foreach (int p in mine)
        {
            var l = model.Forward(p, prompts[p]);
            if (l is not null) logits[p] = l;
        }
        var next = new Dictionary<int, int>();
        var samplers = mine.ToDictionary(p => p, p => new Sampler(sampling, p));
        foreach (int p in mine)
        {
            tokens[p] = new int[newTokens];
            next[p] = NextToken(logits[p], weights.Config.Vocab, layout, pp, samplers[p], 0);
            tokens[p][0] = next[p];
        }
        prefillMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        for (int i = 1; i < newTokens; i++)
        {
            // All requests' step first (a stage hands one on and takes the next), then their tokens.
            var step = mine.ToDictionary(p => p, p => model.Forward(p, [next[p]]));
            foreach (int p in mine)
            {
                next[p] = NextToken(step[p], weights.Config.Vocab, layout, pp, samplers[p], i);
                tokens[p][i] = next[p];
            }
        }
        decodeMs = clock.Elapsed.TotalMilliseconds;
        kvBytes = model.KvCacheBytes;
        sent = mesh.BytesSent - sentBefore;
        direct = mesh.DeviceDirectCalls - directBefore;
        staged = mesh.StagedBytes - stagedBefore;
        dropped = model.DroppedTokens;
        if (!layout.LastStage) logits = new float[prompts.Length][];
        world.Barrier();
    }

    // The last stage picks the token (greedy: lowest index on ties) and tells the other stages. Its ranks hold bitwise
    // the same logits and the draw is a function of (seed, request, step), so they all pick the same one.
    private static int NextToken(float[]? logits, int vocab, ParallelLayout layout, ProcessGroup pp, Sampler sampler, int step)
    {
        int token = 0;
        if (logits is not null)
        {
            int row = logits.Length / vocab - 1;
            token = sampler.Next(logits.AsSpan(row * vocab, vocab), step);
        }
        if (pp.Size == 1) return token;
        using var t = Tensors.Tensor.FromInts(CpuDevice.Instance, [token], 1);
        pp.Broadcast(t, pp.Size - 1);
        return t.ToInts()[0];
    }
}
