using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Models;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// One request through a single-device model from an empty KV cache: prefill, then one forward per further token, each
/// token chosen by the sampler (draw i for token i) and handed to <c>onToken</c> as soon as it is chosen.
/// </summary>
internal static class Generation
{
    /// <summary>
    /// The tokens, the prefill logits (prompt x vocab, when asked for), the time to the first token (prefill and its
    /// choice) and the time of the rest.
    /// </summary>
    public sealed record Result(int[] Tokens, float[]? PrefillLogits, double FirstTokenMs, double DecodeMs);

    public static Result Run(LlamaModel model, IDevice device, int[] prompt, int newTokens, Sampler sampler, Action<int>? onToken = null, bool keepLogits = false)
    {
        model.Reset();
        var tokens = new int[newTokens];
        float[]? prefillLogits = null;
        var clock = Stopwatch.StartNew();
        using (var logits = model.Forward(prompt))
        {
            tokens[0] = model.NextToken(logits, sampler, 0);
            if (keepLogits) prefillLogits = logits.ToFloats();
        }
        onToken?.Invoke(tokens[0]);
        double firstTokenMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        for (int i = 1; i < newTokens; i++)
        {
            using var logits = model.Forward([tokens[i - 1]]);
            tokens[i] = model.NextToken(logits, sampler, i);
            onToken?.Invoke(tokens[i]);
        }
        device.Synchronize();
        return new Result(tokens, prefillLogits, firstTokenMs, clock.Elapsed.TotalMilliseconds);
    }
}
