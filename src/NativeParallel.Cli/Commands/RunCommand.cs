using NativeParallel.Cli.Plots;
using NativeParallel.Cli.Progress;
using NativeParallel.Cli.Text;
using NativeParallel.Devices;
using NativeParallel.Kernels.Check;
using NativeParallel.Models;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>nativeparallel run</c>: the main job. Builds the small seeded Llama-style model (or loads --model DIR), runs
/// prefill and decode (greedy, or sampled) on one device from a seeded prompt, --prompt text or --prompt-ids, checks
/// logits and tokens against the host reference, and reports what it measured; text prompts stream text back.
/// </summary>
internal static class RunCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? deviceName = line.Option("device");
        string? promptTokensText = line.Option("prompt-tokens");
        int promptTokens = line.Int32("prompt-tokens", 24);
        string? promptText = line.Option("prompt");
        string? promptIdsText = line.Option("prompt-ids");
        int newTokens = line.Int32("new-tokens", 16);
        string? dtypeText = line.Option("dtype");
        ulong seed = (ulong)line.Int("seed", 1234);
        var sampling = new SamplingOptions(line.Double("temperature", 0), line.Int32("top-k", 0), line.Double("top-p", 1), seed);
        string? strategyOption = line.Option("strategy");
        string? modelFolder = line.Option("model");
        string? json = line.Option("json");
        string? requestsPath = line.Option("requests");
        string? outPath = line.Option("out");
        string? tracePath = line.Option("trace");
        string? plotPath = PlotFile.Check(line.Option("plot"));
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        if (promptTokens < 1 || newTokens < 1) throw new UsageException("--prompt-tokens and --new-tokens must be at least 1");
        if (promptTokens + (long)newTokens > MaxTokens) throw new UsageException($"--prompt-tokens + --new-tokens is {promptTokens + (long)newTokens}; the KV cache holds at most {MaxTokens} tokens");
        if (sampling.Problem() is { } samplingProblem) throw new UsageException("--" + samplingProblem);
        if (promptTokensText is not null && (promptText ?? promptIdsText) is not null) throw new UsageException("--prompt-tokens sets the seeded prompt's length; give it or --prompt/--prompt-ids, not both");
        DType? dtypeOption = dtypeText is null ? null : ParseDType(dtypeText);
        using var trace = TraceFile.Start(tracePath);

        // Everything the options ask is checked here, against the model's shape (config.json only), before any
        // weight is read, device opened or model built.
        var shape = modelFolder is null ? LlamaConfig.Small : HuggingFaceCheckpoint.LoadConfig(modelFolder);
        if (outPath is not null && requestsPath is null) throw new UsageException("--out FILE.jsonl goes with --requests FILE.jsonl");
        if (requestsPath is not null) return RunRequestFile(line, shape, dtypeOption, modelFolder, deviceName, newTokens, sampling, requestsPath, outPath, json);
        var input = PromptInput.Read(promptText, promptIdsText, modelFolder, shape.Vocab);
        if (input.Ids is { } given) promptTokens = given.Length;
        if (promptTokens + (long)newTokens > MaxTokens) throw new UsageException($"the prompt's {promptTokens} tokens + --new-tokens {newTokens} is more than the {MaxTokens} tokens the KV cache holds");
        // A prompt run is about its text: the strategy table runs only when asked for by --strategy.
        string strategies = strategyOption ?? (input.Ids is null ? "all" : "none");
        if (plotPath is not null && strategies == "none")
            throw new UsageException("--plot draws the strategy table; a prompt run has none unless --strategy is given (e.g. --strategy all)");
        int capacity = Math.Max(promptTokens + newTokens, PromptTokens + NewTokens);
        var config = shape with { MaxSequence = capacity };
        // --dtype converts a loaded folder's weights too (rounded to bf16, or bf16 widened exactly to f32).
        if (dtypeOption is { } chosenDType) config = config with { DType = chosenDType };
        var launch = NativeParallel.Comm.Rendezvous.LaunchEnvironment.Detect();
        if (launch is not null)
        {
            if (plotPath is not null) throw new UsageException("--plot draws the strategy table of a local run; inside a launched job run is one rank of one strategy");
            var plan = PlanRank(config, strategies, launch.WorldSize, promptTokens, modelFolder);
            using var rankDevice = DeviceRegistry.Open(deviceName);
            var rankWeights = plan.Twin ? new LlamaWeights(TwinConfig(config), seed)
                : modelFolder is null ? new LlamaWeights(config, seed) : HuggingFaceCheckpoint.Load(modelFolder, capacity, config.DType);
            return RunAsRank(rankWeights, plan, rankDevice, input, promptTokens, newTokens, sampling, json, line);
        }
        List<(Strategy Layout, bool Twin)> table = strategies == "none" ? [] : PlanTable(config, strategies);
        if (plotPath is not null && table.Count == 0) throw new UsageException("--plot draws the strategy table, and no strategy fits this model");

        using var device = DeviceRegistry.Open(deviceName);
        var dtype = config.DType;
        var rule = CheckRule.For(dtype);
        Console.WriteLine($"model   {(modelFolder is null ? "" : modelFolder + ": ")}{Describe(config)}, {config.Parameters / 1e6:F2} M parameters, seed {seed}");
        Console.WriteLine($"device  {device.Name}: {device.Description}");
        Console.WriteLine(table.Count > 0 ? "layout  1 rank first (the reference of every parallel strategy below)" : "layout  1 rank");

        var weights = modelFolder is null ? new LlamaWeights(config, seed) : HuggingFaceCheckpoint.Load(modelFolder, capacity, config.DType);
        var prompt = input.Ids ?? MainPrompt(config, seed, promptTokens);
        if (input.Ids is not null)
            Console.WriteLine($"prompt  {(input.Text is null ? "" : $"\"{input.Text}\" through {input.Tokenizer!.Description}: ")}{prompt.Length} tokens: {string.Join(' ', prompt)}");
        Console.WriteLine($"sample  {sampling.Describe()}");

        using var model = new LlamaModel(device, weights);
        // Warm-up: compiles or loads the kernels and touches every buffer once, so timings are steady state.
        using (model.Forward(prompt)) { }

        // Text comes out as each token is chosen; the timings below include writing it (microseconds a token).
        var stream = input.Tokenizer is { } tokenizer ? new TextStream(tokenizer, Console.Out) : null;
        if (stream is not null) Console.Write("text    ");
        var run = Generation.Run(model, device, prompt, newTokens, new Sampler(sampling), stream is null ? null : stream.Add, keepLogits: true);
        var (generated, prefillLogits, prefillMs, decodeMs) = (run.Tokens, run.PrefillLogits!, run.FirstTokenMs, run.DecodeMs);
        int decodeSteps = newTokens - 1;
        string? text = stream?.Finish();
        if (stream is not null) Console.WriteLine();

        Console.WriteLine($"prefill {promptTokens} tokens in {prefillMs:F2} ms ({promptTokens / (prefillMs / 1000):F0} tokens/s)");
        if (decodeSteps > 0)
            Console.WriteLine($"decode  {decodeSteps} tokens at {decodeMs / decodeSteps:F2} ms/token ({decodeSteps / (decodeMs / 1000):F0} tokens/s), KV cache through attention_decode");
        Console.WriteLine($"memory  weights {model.WeightBytes / 1048576.0:F2} MiB, KV cache {model.KvCacheBytes / 1048576.0:F3} MiB " +
                          $"({2 * config.Layers * config.KvHeads * config.HeadDim * dtype.SizeOf()} bytes per token)");

        // Progress from here (not during generation, whose streamed text must reach the terminal as it comes): the
        // host reference check, then each row of the strategy table.
        var (ownLayouts, twinLayouts) = TableLayouts(table);
        using var progress = WorkProgress.Start("run", 1 + ownLayouts.Count + twinLayouts.Count, "checks", quiet);
        // The check: the same model through the host reference kernels (float64 inside every op), judged by the rule.
        var referenceLogits = LlamaReference.Logits(weights, prompt);
        double error = ErrorBounds.RelativeError(prefillLogits, Array.ConvertAll(referenceLogits, v => (double)v));
        // Sampled runs are checked the same way: the reference draws with the same seed, so its tokens are the ones to match.
        var referenceTokens = LlamaReference.Generate(weights, prompt, newTokens, new Sampler(sampling));
        int matching = generated.Zip(referenceTokens).TakeWhile(p => p.First == p.Second).Count();
        var verdict = rule.Judge(error, matching == newTokens);
        Console.WriteLine($"check   prefill logits vs host reference: relative error {error:E2} (bound {rule.LogitsBound:E0}) {(rule.LogitsOk(error) ? "ok" : "FAIL")}");
        Console.WriteLine($"check   {(sampling.IsGreedy ? "greedy" : "sampled")} tokens vs host reference: {matching}/{newTokens} identical " +
                          (matching == newTokens ? "ok" : rule.TokensOk(false) ? $"ok ({dtype.Name()}: near ties may differ)" : "FAIL"));
        Console.WriteLine($"tokens  {string.Join(' ', generated)}");
        progress.Advance("host reference check");

        List<Row> rows = table.Count == 0 ? [] : StrategyTable(weights, config, (ownLayouts, twinLayouts), sampling, device, rule, progress);
        progress.Dispose();
        bool ok = verdict.Ok && rows.All(r => r.Verdict.Ok);

        JsonReport.Write(json, "run", line, new
        {
            strategies = rows.Select(row => new
            {
                strategy = row.Result.Strategy.Name, moe_twin = row.Twin, ranks = row.Result.Strategy.Ranks, weight_bytes_per_rank = row.Result.WeightBytesPerRank,
                kv_bytes_per_rank = row.Result.KvBytesPerRank, bytes_sent_per_token = row.Result.BytesSentPerToken,
                predicted_bytes_per_token = Predictions.BytesPerToken(row.Twin ? TwinConfig(config) : config, row.Result.Strategy, PromptTokens, NewTokens),
                prefill_ms = row.Result.PrefillMs, decode_ms_per_token = row.Result.DecodeMsPerToken, tokens_per_second = row.Result.TokensPerSecond,
                logits_relative_error = row.Result.MaxLogitsError, tokens_identical = row.Result.TokensIdentical, ranks_identical = row.Result.RanksIdentical,
                ok = row.Verdict.Ok,
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
            logits_bound = rule.LogitsBound,
            prompt_ids = prompt,
            sampling = sampling.Describe(),
            tokens = generated,
            text,
            reference_tokens = referenceTokens,
            ok,
        });
        if (plotPath is not null)
            StrategiesPlot.Save(plotPath, $"run on {device.Name}, {config.Layers} layers, hidden {config.Hidden}, {dtype.Name()}", rows.Select(row => new StrategyPoint(
                row.Result.Strategy.Name + (row.Twin ? " (moe)" : ""), row.Result.WeightBytesPerRank, row.Result.KvBytesPerRank, row.Result.BytesSentPerToken,
                Predictions.BytesPerToken(row.Twin ? TwinConfig(config) : config, row.Result.Strategy, PromptTokens, NewTokens),
                row.Result.PrefillMs, row.Result.DecodeMsPerToken, row.Result.TokensPerSecond)).ToList());
        return ok ? 0 : 1;
    }

    private const int Requests = 4, PromptTokens = 16, NewTokens = 8;

    /// <summary>The longest sequence (prompt and generated tokens) a run sizes its KV cache for: a bound checked before any allocation.</summary>
    public const int MaxTokens = 1 << 16;

    /// <summary>--requests: the options it cannot honour refused, the file read and tokenized, then the requests run.</summary>
    private static int RunRequestFile(CommandLine line, LlamaConfig shape, DType? dtype, string? modelFolder, string? deviceName, int newTokens,
        SamplingOptions sampling, string requestsPath, string? outPath, string? json)
    {
        foreach (string option in new[] { "prompt", "prompt-ids", "prompt-tokens", "strategy", "plot" })
            if (line.Option(option) is not null) throw new UsageException($"--requests takes its prompts from the file; --{option} goes without it");
        if (json is not null) throw new UsageException("--requests writes its results with --out FILE.jsonl, not --json");
        if (NativeParallel.Comm.Rendezvous.LaunchEnvironment.Detect() is not null) throw new UsageException("--requests runs on one device; not yet inside a launched job");
        FolderTokenizer? tokenizer = modelFolder is not null && FolderTokenizer.Exists(modelFolder) ? FolderTokenizer.Load(modelFolder) : null;
        string tokenizerWhere = modelFolder is null ? "the seeded model has none" : $"{modelFolder} has none (neither tokenizer.json nor tokenizer.model)";
        var requests = RequestFile.Read(requestsPath, tokenizer, tokenizerWhere, shape.Vocab, newTokens, sampling);
        var longest = requests.MaxBy(r => (long)r.PromptIds.Length + r.MaxTokens)!;
        if ((long)longest.PromptIds.Length + longest.MaxTokens > MaxTokens)
            throw new InvalidDataException($"{requestsPath}:{longest.Line}: {longest.PromptIds.Length} prompt tokens + max_tokens {longest.MaxTokens} is more than the {MaxTokens} tokens the KV cache holds");
        var config = shape with { MaxSequence = (int)((long)longest.PromptIds.Length + longest.MaxTokens) };
        if (dtype is { } d) config = config with { DType = d };
        return RunRequests.Run(config, modelFolder, deviceName, sampling.Seed, requestsPath, requests, tokenizer, outPath);
    }

    private static DType ParseDType(string text)
    {
        DType d;
        try { d = DTypes.Parse(text); }
        catch (ArgumentException e) { throw new UsageException($"--dtype: {e.Message}"); }
        return d is DType.F32 or DType.BF16 ? d : throw new UsageException($"--dtype {text}: run takes f32 or bf16");
    }

    private static string Describe(LlamaConfig c) =>
        $"{(c.Experts > 0 ? $"Mixtral-style decoder ({c.Experts} experts, top-{c.ExpertsPerToken})" : "Llama-style decoder")}: {c.Layers} layers, hidden {c.Hidden}, " +
        $"heads {c.Heads} (kv {c.KvHeads}), ffn {c.Ffn}, vocab {c.Vocab}, {c.DType.Name()}";

    /// <summary>The mixture-of-experts twin of a dense model, for expert parallelism (4 experts, top-2, half the MLP width each).</summary>
    private static LlamaConfig TwinConfig(LlamaConfig config) => config with { Experts = 4, ExpertsPerToken = 2, Ffn = config.Ffn / 2 };

    /// <summary>The prompt of the single-device run (and request 0 of a launched rank's run).</summary>
    private static int[] MainPrompt(LlamaConfig config, ulong seed, int promptTokens)
    {
        var prompt = new int[promptTokens];
        SeededRandom.Integers(seed + 1, prompt, config.Vocab);
        return prompt;
    }

    private static Strategy ParseStrategy(string text)
    {
        try { return Strategy.Parse(text); }
        catch (ArgumentException e) { throw new UsageException($"--strategy \"{text}\": {e.Message}"); }
    }

    /// <summary>A launched rank's layout, checked against the job and the model before anything is built.</summary>
    private sealed record RankPlan(Strategy Strategy, bool Twin, int Requests);

    private static RankPlan PlanRank(LlamaConfig config, string text, int worldSize, int promptTokens, string? modelFolder)
    {
        if (text == "all" || text.Contains(';')) throw new UsageException("inside a launched job, run takes one --strategy, e.g. --strategy tp=2,pp=2");
        var strategy = ParseStrategy(text);
        if (strategy.Ranks != worldSize) throw new UsageException($"--strategy {strategy.Name} needs {strategy.Ranks} ranks; the job has {worldSize}");
        bool twin = strategy.Ep > 1 && config.Experts == 0;
        if (twin && modelFolder is not null)
            throw new UsageException($"--strategy {strategy.Name}: expert parallelism needs a mixture-of-experts model; {modelFolder} is dense (no num_local_experts)");
        // Request 0 is the single-device run's prompt; the rest fill every replica (dp x ep) equally.
        int requests = (Requests + strategy.Replicas - 1) / strategy.Replicas * strategy.Replicas;
        if (strategy.Check(twin ? TwinConfig(config) : config, promptTokens, requests) is { } problem)
            throw new UsageException($"--strategy {strategy.Name}: {problem}");
        return new RankPlan(strategy, twin, requests);
    }

    /// <summary>The table's layouts (each with whether it runs on the MoE twin), checked before anything is built.</summary>
    private static List<(Strategy Layout, bool Twin)> PlanTable(LlamaConfig config, string which)
    {
        bool all = which == "all";
        var chosen = all
            ? ["dp=2", "pp=2", "tp=2", "sp=2", "tp+sp=2", "tp=2,pp=2", "tp=2,dp=2", "tp=2,sp=2", "ep=2", "ep=2,tp=2"]
            : which.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (chosen.Count == 0) throw new UsageException("--strategy is empty: expected all or e.g. \"tp=2,pp=2;sp=2\"");
        var plan = new List<(Strategy, bool)>();
        foreach (string text in chosen)
        {
            var layout = ParseStrategy(text);
            // Expert parallelism runs the model's own experts when it has them, else its mixture-of-experts twin.
            bool twin = layout.Ep > 1 && config.Experts == 0;
            if (layout.Check(twin ? TwinConfig(config) : config, PromptTokens, Requests) is { } problem)
            {
                // "all" runs every default layout the model's shape allows and says which it left out.
                if (all) Console.WriteLine($"skipped {layout.Name}: {problem}");
                else throw new UsageException($"--strategy {layout.Name}{(twin ? " (on the model's mixture-of-experts twin)" : "")}: {problem}");
                continue;
            }
            plan.Add((layout, twin));
        }
        return plan;
    }

    /// <summary>
    /// Inside a launched job (launch, torchrun, mpirun): this process is one rank of one strategy whose rank count
    /// is the job's size. Every rank runs the same weights (the --model folder's, or the seeded ones), sharded by
    /// the layout, on --device, and checks the outcome against its own single-device run; rank 0 prints the row and
    /// the tokens of request 0, whose prompt is the single-device run's (or --prompt/--prompt-ids), and their text
    /// when the folder has a tokenizer. Every rank tokenizes the same text and draws from the same seed, so sampled
    /// runs are checked against the single-device run like greedy ones.
    /// </summary>
    private static int RunAsRank(LlamaWeights weights, RankPlan plan, IDevice device, PromptInput input, int promptTokens, int newTokens,
        SamplingOptions sampling, string? json, CommandLine line)
    {
        var strategy = plan.Strategy;
        var config = weights.Config;
        var rule = CheckRule.For(config.DType);
        ulong seed = sampling.Seed;
        using var world = NativeParallel.Comm.ProcessGroup.FromEnvironment("run");
        var prompts = new[] { input.Ids ?? MainPrompt(config, seed, promptTokens) }.Concat(Enumerable.Range(1, plan.Requests - 1).Select(p =>
        {
            var ids = new int[promptTokens];
            SeededRandom.Integers(seed + 10 + (ulong)p, ids, config.Vocab);
            return ids;
        })).ToArray();
        var single = StrategyRun.Single(device, weights, prompts, newTokens, sampling);
        var r = StrategyRun.RunOnGroup(world, weights, strategy, prompts, newTokens, (single.Logits, single.Tokens), device, sampling);
        var verdict = rule.Judge(r);
        if (world.Rank == 0)
        {
            Console.WriteLine($"strategy {strategy.Name} on {world.Size} processes over {world.TransportName}, device {device.Name}" +
                              $"{(plan.Twin ? ", on the 4-expert mixture-of-experts twin" : "")}: " +
                              $"{prompts.Length} requests of {promptTokens} prompt tokens, {newTokens} generated each; weights/rank {Mib(r.WeightBytesPerRank)}, " +
                              $"KV/rank {Mib(r.KvBytesPerRank)}, {r.BytesSentPerToken:F0} B/token sent (predicted {Predictions.BytesPerToken(config, strategy, promptTokens, newTokens):F0}), " +
                              $"prefill {r.PrefillMs:F1} ms, decode {r.DecodeMsPerToken:F2} ms/token, {r.TokensPerSecond:F0} tokens/s");
            Console.WriteLine($"check    vs the single-device run: logits rel err {r.MaxLogitsError:E1}, {(sampling.IsGreedy ? "greedy" : "sampled")} tokens {(r.TokensIdentical ? "identical" : "DIFFER")}, " +
                              $"ranks {(r.RanksIdentical ? "bitwise identical" : "DISAGREE")}: {verdict.Text}");
            if (input.Ids is not null) Console.WriteLine($"prompt  {prompts[0].Length} tokens: {string.Join(' ', prompts[0])}");
            Console.WriteLine($"sample  {sampling.Describe()}");
            Console.WriteLine($"tokens  {string.Join(' ', r.Tokens[0])}");
            // The tokens arrive at the end of the run, gathered from the last stage, so the text is printed whole.
            string? text = input.Tokenizer?.Decode(r.Tokens[0]);
            if (text is not null) Console.WriteLine($"text    {text}");
            JsonReport.Write(json, "run", line, new { strategy = strategy.Name, moe_twin = plan.Twin, ranks = world.Size, transport = world.TransportName, device = device.Name,
                prompt_ids = prompts[0], sampling = sampling.Describe(), text, result = r, logits_bound = rule.LogitsBound, ok = verdict.Ok });
        }
        return verdict.Ok ? 0 : 1;
    }

    private static int[][] Prompts(LlamaConfig config, ulong seed) => Enumerable.Range(0, Requests).Select(p =>
    {
        var ids = new int[PromptTokens];
        SeededRandom.Integers(seed + 10 + (ulong)p, ids, config.Vocab);
        return ids;
    }).ToArray();

    /// <summary>One judged row of the table.</summary>
    private sealed record Row(StrategyResult Result, bool Twin, Verdict Verdict);

    /// <summary>The seed's table: every strategy on thread ranks, measured, beside the formulas, checked against one device.</summary>
    private static List<Row> StrategyTable(LlamaWeights weights, LlamaConfig config, (List<Strategy> Own, List<Strategy> Twins) layouts, SamplingOptions sampling,
        IDevice device, CheckRule rule, WorkProgress progress)
    {
        ulong seed = sampling.Seed;
        string tokens = sampling.IsGreedy ? "greedy tokens" : "sampled tokens";
        if (weights.Config.MaxSequence < PromptTokens + NewTokens) throw new InvalidOperationException("the model's KV cache is smaller than the strategy table needs");
        var prompts = Prompts(config, seed);
        Console.WriteLine();
        Console.WriteLine($"strategies: {Requests} requests of {PromptTokens} prompt tokens, {NewTokens} generated each; ranks are threads sharing {device.Name}" +
                          "; " +
                          $"each checked against the single-device run of its model (logits, {tokens}, agreement between ranks)");
        Console.WriteLine($"{"strategy",-16} {"ranks",5} {"weights/rank",12} {"KV/rank",9} {"comm B/token",13} {"predicted",10} {"prefill ms",10} {"decode ms/tok",13} {"tokens/s",9} {"bubble",7}  check");
        var rows = new List<Row>();
        // Every layout on the model itself (its own experts when it is a mixture of experts); expert parallelism of
        // a dense model on its mixture-of-experts twin (4 experts, top-2), the same seed.
        var (own, twins) = layouts;
        rows.AddRange(Rows(weights, own, prompts, "", device, rule, sampling, twin: false, progress));
        if (twins.Count > 0)
            rows.AddRange(Rows(new LlamaWeights(TwinConfig(config), seed), twins, prompts, " (moe)", device, rule, sampling, twin: true, progress));
        Console.WriteLine("comm B/token: bytes every rank sent, per processed token (prompt and generated), headers and agreement checks included;");
        Console.WriteLine("predicted: the ring formulas (TP 2 all-reduces of h per layer, PP h per stage boundary, SP K/V all-gathers, EP two all-to-alls");
        Console.WriteLine("per MoE layer); small all-reduces go one-shot (every rank to every rank), which sends more than the ring for tp > 2.");
        Console.WriteLine("bubble: (p-1)/(m+p-1)." + (twins.Count > 0 ? " (moe): a 4-expert top-2 mixture-of-experts twin of the dense model, for expert parallelism." : ""));
        if (device is not HostMemoryDevice)
            Console.WriteLine($"device path: {rows.Sum(r => r.Result.DeviceDirectCalls)} collectives device-direct (ranks reading each other's {device.Name} buffers), " +
                              $"{rows.Sum(r => r.Result.StagedBytes)} bytes staged through host memory (collectives with no device-direct form, e.g. host-side agreement and gathers of results).");
        Console.WriteLine($"check: {rule.DType.Name()} rule: logits rel err <= {rule.LogitsBound:E0}, {tokens} {(rule.TokensMustMatch ? "identical" : "may differ at near ties")}, ranks bitwise identical; any FAIL exits 1.");
        return rows;
    }

    private static IEnumerable<Row> Rows(LlamaWeights weights, List<Strategy> layouts, int[][] prompts, string label, IDevice device, CheckRule rule,
        SamplingOptions sampling, bool twin, WorkProgress progress)
    {
        var single = StrategyRun.Single(device, weights, prompts, NewTokens, sampling);
        foreach (var layout in layouts)
        {
            var r = StrategyRun.Run(weights, layout, prompts, NewTokens, (single.Logits, single.Tokens), device: device, sampling: sampling);
            double predicted = Predictions.BytesPerToken(weights.Config, layout, PromptTokens, NewTokens);
            var verdict = rule.Judge(r);
            string check = verdict.Text;
            if (r.DroppedTokens > 0) check += $", {r.DroppedTokens} routings dropped";
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{layout.Name + label,-16} {layout.Ranks,5} {Mib(r.WeightBytesPerRank),12} {Mib(r.KvBytesPerRank),9} {r.BytesSentPerToken,13:F0} {predicted,10:F0} " +
                $"{r.PrefillMs,10:F1} {r.DecodeMsPerToken,13:F2} {r.TokensPerSecond,9:F0} {Predictions.Bubble(layout.Pp, Requests / layout.Replicas),7:P0}  {check}"));
            progress.Advance(layout.Name + label);
            yield return new Row(r, twin, verdict);
        }
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F2} MiB";

    /// <summary>
    /// The table's rows by model: the layouts on the model itself (its own experts when it is a mixture of experts) after
    /// the single-device row, then expert parallelism of a dense model on its mixture-of-experts twin (4 experts, top-2,
    /// the same seed) after the twin's single-device row. Empty when no table runs.
    /// </summary>
    private static (List<Strategy> Own, List<Strategy> Twins) TableLayouts(List<(Strategy Layout, bool Twin)> plan)
    {
        if (plan.Count == 0) return ([], []);
        var own = plan.Where(p => !p.Twin).Select(p => p.Layout).Prepend(new Strategy()).DistinctBy(l => l.Name).ToList();
        var twins = plan.Where(p => p.Twin).Select(p => p.Layout).ToList();
        return (own, twins.Count == 0 ? [] : twins.Prepend(new Strategy()).DistinctBy(l => l.Name).ToList());
    }
}
