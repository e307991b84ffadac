using NativeParallel.Tensors;

namespace NativeParallel.Parallel;

/// <summary>
/// The one pass/fail rule of <c>nativeparallel run</c>, by dtype: logits within a relative-error bound (f32 1e-4,
/// bf16 3e-2), greedy tokens identical (required in f32; in bf16 rounding can flip a near tie between two logits,
/// so differing tokens are reported but allowed), and every rank that holds logits bitwise identical (always
/// required). The single-device check, every table row and every launched rank judge through it, and the exit
/// code is the conjunction of what it printed.
/// </summary>
public sealed record CheckRule(DType DType)
{
    /// <summary>The rule for <paramref name="dtype"/>.</summary>
    public static CheckRule For(DType dtype) => new(dtype);

    /// <summary>Largest relative L2 error of the logits that passes.</summary>
    public double LogitsBound => DType == DType.F32 ? 1e-4 : 3e-2;

    /// <summary>Whether the greedy tokens must be identical (f32) or may differ at near ties (bf16).</summary>
    public bool TokensMustMatch => DType == DType.F32;

    /// <summary>Logits within the bound (NaN fails).</summary>
    public bool LogitsOk(double relativeError) => relativeError <= LogitsBound;

    /// <summary>Tokens pass: identical, or allowed to differ in this dtype.</summary>
    public bool TokensOk(bool identical) => identical || !TokensMustMatch;

    /// <summary>Judges one outcome.</summary>
    public Verdict Judge(double logitsError, bool tokensIdentical, bool ranksIdentical = true)
    {
        bool logitsOk = LogitsOk(logitsError), tokensOk = TokensOk(tokensIdentical), ok = logitsOk && tokensOk && ranksIdentical;
        var notes = new List<string> { string.Create(System.Globalization.CultureInfo.InvariantCulture, $"rel err {logitsError:E1}{(logitsOk ? "" : $" > {LogitsBound:E0}")}") };
        if (!tokensIdentical) notes.Add(tokensOk ? $"tokens differ ({DType.Name()}: near ties may flip)" : "tokens differ");
        if (!ranksIdentical) notes.Add("ranks disagree");
        return new Verdict(ok, $"{(ok ? "ok" : "FAIL")} ({string.Join(", ", notes)})");
    }

    /// <summary>Judges a strategy run against its single-device run.</summary>
    public Verdict Judge(StrategyResult r) => Judge(r.MaxLogitsError, r.TokensIdentical, r.RanksIdentical);
}

/// <summary>A judged outcome: <see cref="Ok"/> and the words printed for it ("ok (...)" or "FAIL (...)").</summary>
public sealed record Verdict(bool Ok, string Text)
{
    /// <summary>All pass.</summary>
    public static bool All(IEnumerable<Verdict> verdicts) => verdicts.All(v => v.Ok);
}
