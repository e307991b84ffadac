using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Kernels.Check;
using NativeParallel.Models;
using NativeParallel.Parallel;
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
        string strategies = line.Option("strategy", "all")!;
        string? modelFolder = line.Option("model");
        string? json = line.Option("json");
        line.RejectUnknown();
        if (promptTokens < 1 || newTokens < 1) throw new UsageException("--prompt-tokens and --new-tokens must be at least 1");

        int capacity = Math.Max(promptTokens + newTokens, PromptTokens + NewTokens);
        var loaded = modelFolder is null ? null : HuggingFaceCheckpoint.Load(modelFolder, capacity);
        var config = loaded?.Config ?? LlamaConfig.Small with { DType = dtype, MaxSequence = capacity };
        dtype = config.DType;
        if (NativeParallel.Comm.Rendezvous.LaunchEnvironment.Detect() is not null) return RunAsRank(config, strategies, seed, json);
        using var device = DeviceRegistry.Open(deviceName);
        Console.WriteLine($"model   {(modelFolder is null ? "" : modelFolder + ": ")}Llama-style decoder: {config.Layers} layers, hidden {config.Hidden}, heads {config.Heads} (kv {config.KvHeads}), " +
                          $"ffn {config.Ffn}, vocab {config.Vocab}, {dtype.Name()}, {config.Parameters / 1e6:F2} M parameters, seed {seed}");
        Console.WriteLine($"device  {device.Name}: {device.Description}");
        Console.WriteLine("layout  1 rank first (the reference of every parallel strategy below)");

        var weights = loaded ?? new LlamaWeights(config, seed);
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

        var table = StrategyTable(weights, config, strategies, seed, device);
        bool strategiesOk = table.All(r => r.MaxLogitsError <= (dtype == DType.F32 ? 1e-4 : 3e-2) && (r.TokensIdentical || dtype != DType.F32) && r.RanksIdentical);

        JsonReport.Write(json, new
        {
            strategies = table.Select(r => new
            {
                strategy = r.Strategy.Name, ranks = r.Strategy.Ranks, weight_bytes_per_rank = r.WeightBytesPerRank, kv_bytes_per_rank = r.KvBytesPerRank,
                bytes_sent_per_token = r.BytesSentPerToken, predicted_bytes_per_token = Predictions.BytesPerToken(config, r.Strategy, PromptTokens, NewTokens),
                prefill_ms = r.PrefillMs, decode_ms_per_token = r.DecodeMsPerToken, tokens_per_second = r.TokensPerSecond,
                logits_relative_error = r.MaxLogitsError, tokens_identical = r.TokensIdentical, ranks_identical = r.RanksIdentical,
            }),
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
            ok = logitsOk && tokensOk && strategiesOk,
        });
        return logitsOk && tokensOk && strategiesOk ? 0 : 1;
    }

    private const int Requests = 4, PromptTokens = 16, NewTokens = 8;

    /// <summary>
    /// Inside a launched job (launch, torchrun, mpirun): this process is one rank of one strategy whose rank count
    /// is the job's size. Every rank checks the outcome against its own single-device run; rank 0 prints the row.
    /// </summary>
    private static int RunAsRank(LlamaConfig config, string strategyText, ulong seed, string? json)
    {
        if (strategyText == "all" || strategyText.Contains(';')) throw new UsageException("inside a launched job, run takes one --strategy, e.g. --strategy tp=2,pp=2");
        var strategy = Strategy.Parse(strategyText);
        using var world = NativeParallel.Comm.ProcessGroup.FromEnvironment("run");
        var weights = new LlamaWeights(config with { MaxSequence = PromptTokens + NewTokens }, seed);
        var prompts = Prompts(config, seed);
        var single = StrategyRun.Single(CpuDevice.Instance, weights, prompts, NewTokens);
        var r = StrategyRun.RunOnGroup(world, weights, strategy, prompts, NewTokens, (single.Logits, single.Tokens));
        bool ok = r.MaxLogitsError <= (config.DType == DType.F32 ? 1e-4 : 3e-2) && (r.TokensIdentical || config.DType != DType.F32) && r.RanksIdentical;
        if (world.Rank == 0)
        {
            Console.WriteLine($"strategy {strategy.Name} on {world.Size} processes over {world.TransportName}: weights/rank {Mib(r.WeightBytesPerRank)}, " +
                              $"KV/rank {Mib(r.KvBytesPerRank)}, {r.BytesSentPerToken:F0} B/token sent (predicted {Predictions.BytesPerToken(config, strategy, PromptTokens, NewTokens):F0}), " +
                              $"prefill {r.PrefillMs:F1} ms, decode {r.DecodeMsPerToken:F2} ms/token, {r.TokensPerSecond:F0} tokens/s");
            Console.WriteLine($"check    vs the single-device run: logits rel err {r.MaxLogitsError:E1}, greedy tokens {(r.TokensIdentical ? "identical" : "DIFFER")}, " +
                              $"ranks {(r.RanksIdentical ? "bitwise identical" : "DISAGREE")}: {(ok ? "ok" : "FAIL")}");
            JsonReport.Write(json, new { strategy = strategy.Name, ranks = world.Size, transport = world.TransportName, result = r, ok });
        }
        return ok ? 0 : 1;
    }

    private static int[][] Prompts(LlamaConfig config, ulong seed) => Enumerable.Range(0, Requests).Select(p =>
    {
        var ids = new int[PromptTokens];
        SeededRandom.Integers(seed + 10 + (ulong)p, ids, config.Vocab);
        return ids;
    }).ToArray();

    /// <summary>The seed's table: every strategy on thread ranks, measured, beside the formulas, checked against one device.</summary>
    private static List<StrategyResult> StrategyTable(LlamaWeights weights, LlamaConfig config, string which, ulong seed, IDevice device)
    {
        // The same seeded weights, with a KV cache sized for the table's requests.
        config = config with { MaxSequence = Math.Max(config.MaxSequence, PromptTokens + NewTokens) };
        if (weights.Config.MaxSequence < config.MaxSequence) throw new InvalidOperationException("the model's KV cache is smaller than the strategy table needs");
        var chosen = which == "all"
            ? ["dp=2", "pp=2", "tp=2", "sp=2", "tp+sp=2", "tp=2,pp=2", "tp=2,dp=2", "tp=2,sp=2", "ep=2", "ep=2,tp=2"]
            : which.Split(';', StringSplitOptions.RemoveEmptyEntries).ToList();
        var layouts = chosen.Select(Strategy.Parse).ToList();
        var prompts = Prompts(config, seed);
        Console.WriteLine();
        Console.WriteLine($"strategies: {Requests} requests of {PromptTokens} prompt tokens, {NewTokens} generated each; ranks are threads sharing {device.Name}" +
                          (device is HostMemoryDevice ? "; " : " (collectives staged through host memory); ") +
                          "each checked against the single-device run of its model (logits, greedy tokens, agreement between ranks)");
        Console.WriteLine($"{"strategy",-16} {"ranks",5} {"weights/rank",12} {"KV/rank",9} {"comm B/token",13} {"predicted",10} {"prefill ms",10} {"decode ms/tok",13} {"tokens/s",9} {"bubble",7}  check");
        var results = new List<StrategyResult>();
        // Dense strategies on the dense model; expert parallelism on its mixture-of-experts twin (4 experts, top-2).
        var dense = layouts.Where(l => l.Ep == 1).Prepend(new Strategy()).DistinctBy(l => l.Name).ToList();
        var experts = layouts.Where(l => l.Ep > 1).ToList();
        results.AddRange(Rows(weights, dense, prompts, "", device));
        if (experts.Count > 0)
        {
            var moeConfig = config with { Experts = 4, ExpertsPerToken = 2, Ffn = config.Ffn / 2 };
            results.AddRange(Rows(new LlamaWeights(moeConfig, seed), experts.Prepend(new Strategy()).ToList(), prompts, " (moe)", device));
        }
        Console.WriteLine("comm B/token: bytes every rank sent, per processed token (prompt and generated), headers and agreement checks included;");
        Console.WriteLine("predicted: the ring formulas (TP 2 all-reduces of h per layer, PP h per stage boundary, SP K/V all-gathers, EP two all-to-alls");
        Console.WriteLine("per MoE layer); small all-reduces go one-shot (every rank to every rank), which sends more than the ring for tp > 2.");
        Console.WriteLine("bubble: (p-1)/(m+p-1). (moe): a 4-expert top-2 mixture-of-experts twin of the model, for expert parallelism.");
        return results;
    }

    private static IEnumerable<StrategyResult> Rows(LlamaWeights weights, List<Strategy> layouts, int[][] prompts, string label, IDevice device)
    {
        var single = StrategyRun.Single(device, weights, prompts, NewTokens);
        foreach (var layout in layouts)
        {
            var r = StrategyRun.Run(weights, layout, prompts, NewTokens, (single.Logits, single.Tokens), device: device);
            double predicted = Predictions.BytesPerToken(weights.Config, layout, PromptTokens, NewTokens);
            string check = r.MaxLogitsError <= 1e-4 && r.TokensIdentical && r.RanksIdentical ? $"ok (rel err {r.MaxLogitsError:E1})"
                : $"FAIL (rel err {r.MaxLogitsError:E1}, tokens {(r.TokensIdentical ? "same" : "differ")}, ranks {(r.RanksIdentical ? "agree" : "disagree")})";
            if (r.DroppedTokens > 0) check += $", {r.DroppedTokens} routings dropped";
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{layout.Name + label,-16} {layout.Ranks,5} {Mib(r.WeightBytesPerRank),12} {Mib(r.KvBytesPerRank),9} {r.BytesSentPerToken,13:F0} {predicted,10:F0} " +
                $"{r.PrefillMs,10:F1} {r.DecodeMsPerToken,13:F2} {r.TokensPerSecond,9:F0} {Predictions.Bubble(layout.Pp, Requests / layout.Replicas),7:P0}  {check}"));
            yield return r;
        }
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F2} MiB";
}
