using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Kernels.Check;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>nativeparallel run</c>: the main job. Builds the small seeded Llama-style model, runs prefill and greedy
/// decode on one device, checks logits and tokens against the host reference, and reports what it measured.
/// </summary>
internal static class RunCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? deviceName = line.Option("device");
        int promptTokens = (int)line.Int("prompt-tokens", 24);
        int newTokens = (int)line.Int("new-tokens", 16);
        var dtype = DTypes.Parse(line.Option("dtype", "f32")!);
        ulong seed = (ulong)line.Int("seed", 1234);
        string? json = line.Option("json");
        line.RejectUnknown();
        if (promptTokens < 1 || newTokens < 1) throw new UsageException("--prompt-tokens and --new-tokens must be at least 1");

        var config = LlamaConfig.Small with { DType = dtype, MaxSequence = promptTokens + newTokens };
        using var device = DeviceRegistry.Open(deviceName);
        Console.WriteLine($"model   Llama-style decoder: {config.Layers} layers, hidden {config.Hidden}, heads {config.Heads} (kv {config.KvHeads}), " +
                          $"ffn {config.Ffn}, vocab {config.Vocab}, {dtype.Name()}, {config.Parameters / 1e6:F2} M parameters, seed {seed}");
        Console.WriteLine($"device  {device.Name}: {device.Description}");
        Console.WriteLine("layout  1 rank (single device; the parallel strategies build on this run as their reference)");

        var weights = new LlamaWeights(config, seed);
        var prompt = new int[promptTokens];
        SeededRandom.Integers(seed + 1, prompt, config.Vocab);

        using var model = new LlamaModel(device, weights);
        // Warm-up: compiles or loads the kernels and touches every buffer once, so timings are steady state.
        using (model.Forward(prompt)) { }
        model.Reset();

        var generated = new int[newTokens];
        var clock = Stopwatch.StartNew();
        float[] prefillLogits;
        using (var logits = model.Forward(prompt))
        {
            generated[0] = model.NextToken(logits);
            prefillLogits = logits.ToFloats();
        }
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        for (int i = 1; i < newTokens; i++)
        {
            using var logits = model.Forward([generated[i - 1]]);
            generated[i] = model.NextToken(logits);
        }
        device.Synchronize();
        double decodeMs = clock.Elapsed.TotalMilliseconds;
        int decodeSteps = newTokens - 1;

        Console.WriteLine($"prefill {promptTokens} tokens in {prefillMs:F2} ms ({promptTokens / (prefillMs / 1000):F0} tokens/s)");
        if (decodeSteps > 0)
            Console.WriteLine($"decode  {decodeSteps} tokens at {decodeMs / decodeSteps:F2} ms/token ({decodeSteps / (decodeMs / 1000):F0} tokens/s), KV cache through attention_decode");
        Console.WriteLine($"memory  weights {model.WeightBytes / 1048576.0:F2} MiB, KV cache {model.KvCacheBytes / 1048576.0:F3} MiB " +
                          $"({2 * config.Layers * config.KvHeads * config.HeadDim * dtype.SizeOf()} bytes per token)");

        // The check: the same model through the host reference kernels (float64 inside every op).
        var referenceLogits = LlamaReference.Logits(weights, prompt);
        double error = ErrorBounds.RelativeError(prefillLogits, Array.ConvertAll(referenceLogits, v => (double)v));
        double bound = dtype == DType.F32 ? 1e-4 : 3e-2;
        var referenceTokens = LlamaReference.Generate(weights, prompt, newTokens);
        int matching = generated.Zip(referenceTokens).TakeWhile(p => p.First == p.Second).Count();
        bool logitsOk = error <= bound;
        // bf16 rounding can flip a near tie between two logits, so only f32 requires identical greedy tokens.
        bool tokensOk = matching == newTokens || dtype != DType.F32;
        Console.WriteLine($"check   prefill logits vs host reference: relative error {error:E2} (bound {bound:E0}) {(logitsOk ? "ok" : "FAIL")}");
        Console.WriteLine($"check   greedy tokens vs host reference: {matching}/{newTokens} identical {(matching == newTokens ? "ok" : tokensOk ? "(bf16: near ties may differ)" : "FAIL")}");
        Console.WriteLine($"tokens  {string.Join(' ', generated)}");

        JsonReport.Write(json, new
        {
            device = device.Name,
            device_description = device.Description,
            dtype = dtype.Name(),
            parameters = config.Parameters,
            prompt_tokens = promptTokens,
            new_tokens = newTokens,
            prefill_ms = prefillMs,
            decode_ms_per_token = decodeSteps > 0 ? decodeMs / decodeSteps : 0,
            weight_bytes = model.WeightBytes,
            kv_cache_bytes = model.KvCacheBytes,
            logits_relative_error = error,
            logits_bound = bound,
            tokens = generated,
            reference_tokens = referenceTokens,
            ok = logitsOk && tokensOk,
        });
        return logitsOk && tokensOk ? 0 : 1;
    }
}
