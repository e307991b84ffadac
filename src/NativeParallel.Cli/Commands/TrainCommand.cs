using System.Diagnostics;
using NativeParallel.Cli.Plots;
using NativeParallel.Cli.Progress;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;
using NativeParallel.Training;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>nativeparallel train</c>: trains a Llama-style decoder on one device from llm.c token shards, one line per step,
/// with validation, checkpoints that resume bit for bit, and a Hugging Face folder at the end.
/// </summary>
internal static class TrainCommand
{
    /// <summary>The vocabulary of GPT-2's tokenizer, which <c>prepare</c> writes.</summary>
    private const int Gpt2Vocab = 50257;

    /// <summary>The largest --vocab (llm.c shards hold uint16 ids, so more than 65536 is never needed; this leaves room).</summary>
    private const int MaxVocab = 1 << 20;

    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? modelFolder = line.Option("model");
        string data = line.Option("data") ?? throw new UsageException("train needs --data FILE|GLOB (llm.c token shards; make one with 'nativeparallel prepare --text FILE --out FILE.bin')");
        string? valData = line.Option("val-data");
        int valEvery = line.Int32("val-every", 25);
        int valBatches = line.Int32("val-batches", 4);
        int batch = line.Int32("batch", 8);
        int seq = line.Int32("seq", 64);
        int steps = line.Int32("steps", 50);
        double lr = line.Double("lr", 1e-3);
        double weightDecay = line.Double("weight-decay", 0.01);
        double beta1 = line.Double("beta1", 0.9), beta2 = line.Double("beta2", 0.999), eps = line.Double("eps", 1e-8);
        double gradClip = line.Double("grad-clip", 1.0);
        int warmup = line.Int32("warmup", 0);
        bool cosine = line.Flag("cosine");
        bool recompute = line.Flag("recompute");
        double minLr = line.Double("min-lr", 0);
        var dtype = DTypes.Parse(line.Option("dtype", "f32")!);
        string? deviceName = line.Option("device");
        ulong seed = (ulong)line.Int("seed", 1234);
        int vocabOption = line.Int32("vocab", 0);
        int expertsOption = line.Int32("experts", 0);
        // Null when not given: a resumed run then keeps its checkpoint's capacity factor.
        double? capacityOption = line.Option("capacity") is null ? null : line.Double("capacity", 0);
        string? save = line.Option("save");
        string? checkpoint = line.Option("checkpoint");
        int checkpointEvery = line.Int32("checkpoint-every", 0);
        string? resume = line.Option("resume");
        string? json = line.Option("json");
        int dpOption = line.Int32("dp", 0);
        double bucketMb = line.Double("bucket-mb", 25);
        int zero = line.Int32("zero", 0);
        int tpOption = line.Int32("tp", 1);
        int ppOption = line.Int32("pp", 1);
        int microBatches = line.Int32("micro-batches", 0);
        string? strategy = line.Option("strategy");
        string? scheduleOption = line.Option("schedule");
        bool sequenceParallel = line.Flag("sp");
        string? tracePath = line.Option("trace");
        string? plotPath = PlotFile.Check(line.Option("plot"));
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        bool table = strategy is not null && (strategy == "all" || strategy.Contains(';'));
        TrainingLayout Parse(string text)
        {
            try { return TrainingLayout.Parse(text); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
        }
        bool allLayouts = strategy == "all";
        // A list is parsed now, so a typo exits before any data is read; "all" depends on the model (ep rows for a
        // mixture of experts), so it is chosen once the model is known.
        var layouts = !table || allLayouts ? null : strategy!.Split(';', StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToArray();
        bool axisOptions = dpOption > 0 || tpOption != 1 || ppOption != 1 || zero != 0 || microBatches != 0 || scheduleOption is not null || sequenceParallel;
        if (strategy is not null && axisOptions)
            throw new UsageException("give the layout either as --strategy \"dp=2,tp=2,pp=2,mb=4,1f1b\" or with --dp/--tp/--sp/--pp/--zero/--micro-batches/--schedule, not both");
        if (table && (save is not null || checkpoint is not null || resume is not null))
            throw new UsageException("--strategy all (or a ';' list) runs the table of training layouts; it does not --save, --checkpoint or --resume");
        if (dpOption < 0 || tpOption < 1 || ppOption < 1 || microBatches < 0 || bucketMb <= 0)
            throw new UsageException("--dp, --tp, --pp and --micro-batches must be at least 1, --bucket-mb positive");
        if (zero is not (0 or 1)) throw new UsageException($"--zero takes 0 or 1 (ZeRO stage 1: optimizer state sharded over data-parallel ranks), got {zero}");
        PipelineScheduleKind scheduleKind;
        try { scheduleKind = PipelineSchedule.Parse(scheduleOption ?? "1f1b"); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        if (batch < 1 || seq < 1 || steps < 1) throw new UsageException("--batch, --seq and --steps must be at least 1");
        if (vocabOption < 0 || vocabOption > MaxVocab) throw new UsageException($"--vocab must be from 1 to {MaxVocab} (0: sized from the data); got {vocabOption}");
        if (seq > RunCommand.MaxTokens) throw new UsageException($"--seq must be at most {RunCommand.MaxTokens}; got {seq}");
        if (lr <= 0 || weightDecay < 0 || gradClip < 0 || minLr < 0 || warmup < 0 || valEvery < 0 || valBatches < 1 || checkpointEvery < 0)
            throw new UsageException("--lr must be positive; --weight-decay, --grad-clip, --min-lr, --warmup, --val-every, --checkpoint-every must not be negative; --val-batches at least 1");
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1 || eps <= 0) throw new UsageException("--beta1 and --beta2 must be in [0, 1), --eps positive");
        if (dtype is not (DType.F32 or DType.BF16)) throw new UsageException($"train runs in f32 or bf16, not {dtype.Name()}");
        if (modelFolder is not null && resume is not null) throw new UsageException("give --model or --resume, not both (a checkpoint folder holds its model)");
        if (checkpointEvery > 0 && checkpoint is null) throw new UsageException("--checkpoint-every needs --checkpoint DIR");
        if (expertsOption is < 0 or 1 or > 256) throw new UsageException($"--experts takes 2 to 256 (a top-2 mixture of experts in every layer; 0: dense), got {expertsOption}");
        if (capacityOption < 0 || capacityOption > 0 && expertsOption == 0 && modelFolder is null && resume is null)
            throw new UsageException("--capacity F caps each expert at ceil(F × routings / experts) per layer call: it must not be negative, and it needs --experts N or a mixture-of-experts --model");
        if (expertsOption > 0 && (modelFolder ?? resume) is not null)
            throw new UsageException("--experts shapes the seeded config; a --model or --resume folder brings its own (a Mixtral folder trains its experts)");

        // The job's layout: --strategy's, or the axis options'; in a launched job dp fills the world unless given.
        var launched = NativeParallel.Comm.Rendezvous.LaunchEnvironment.Detect();
        var layout = strategy is not null && !table ? Parse(strategy)
            : new TrainingLayout(Math.Max(1, dpOption), zero, tpOption, ppOption, microBatches == 0 ? ppOption : microBatches, scheduleKind, sequenceParallel);
        if (layout.Sp && layout.Tp < 2) throw new UsageException("--sp (sequence parallelism) cuts tokens over the tensor-parallel ranks: give --tp N, N > 1");
        if (launched is not null && !table)
        {
            int others = layout.Tp * layout.Pp;
            bool dpGiven = strategy is not null ? layout.Dp > 1 : dpOption > 0;
            if (!dpGiven && launched.WorldSize % others == 0) layout = layout with { Dp = launched.WorldSize / others };
            if (layout.Ranks != launched.WorldSize)
                throw new UsageException($"inside a launched job the layout must fill the job: {layout.Name} is {layout.Ranks} ranks, the job has {launched.WorldSize}");
        }
        if (layout.Zero == 1 && layout.Dp < 2)
            throw new UsageException("--zero 1 shards the optimizer over data-parallel ranks: give --dp N (N > 1) or launch several processes");

        // A checkpoint's state first: its capacity factor is part of the model the run continues.
        var resumedState = resume is null ? null : TrainingCheckpoint.ReadState(resume);
        double capacity = capacityOption ?? resumedState?.CapacityFactor ?? 0;
        var loader = new TokenLoader(TokenShard.Expand(data), batch, seq);
        var validation = valData is null ? null : new TokenLoader(TokenShard.Expand(valData), batch, seq);
        string? weightsFolder = resume ?? modelFolder;
        LlamaWeights weights;
        if (weightsFolder is not null)
        {
            weights = HuggingFaceCheckpoint.Load(weightsFolder, Math.Max(256, seq));
            if (weights.Config.DType != DType.F32) weights = ToF32(weights);
            if (capacity > 0)
            {
                if (weights.Config.Experts == 0)
                    throw capacityOption is null
                        ? (Exception)new InvalidDataException($"{TrainingCheckpoint.StatePath(resume!)}: field 'capacity_factor' is {capacity}, but {weightsFolder} holds a dense model (no num_local_experts)")
                        : new UsageException($"--capacity applies to a mixture-of-experts model; {weightsFolder} is dense");
                weights = new LlamaWeights(weights.Config with { CapacityFactor = capacity }, weights.Embedding, weights.Layers, weights.FinalNorm, weights.LmHead);
            }
        }
        else
        {
            int vocab = vocabOption > 0 ? vocabOption : loader.MaxToken < LlamaConfig.Small.Vocab ? LlamaConfig.Small.Vocab : Math.Max(Gpt2Vocab, loader.MaxToken + 1);
            weights = new LlamaWeights(LlamaConfig.Small with
            {
                Vocab = vocab, MaxSequence = Math.Max(256, seq), Experts = expertsOption, ExpertsPerToken = 2, CapacityFactor = capacity,
            }, seed);
        }
        var config = weights.Config;
        // Every shard, training and validation, is checked against the vocabulary as it is read.
        loader.CheckVocabulary(config.Vocab);
        validation?.CheckVocabulary(config.Vocab);
        // Every layout is checked against the model and the batch before anything is built. "all" runs every default
        // layout that fits and can be held to one device's losses, and says which it left out and why (as run's
        // table does); a layout named in a list or given alone is refused with the same reason.
        if (allLayouts) layouts = TrainingLayouts.AllFor(config).Select(Parse).ToArray();
        var skipped = new List<string>();
        if (layouts is not null)
        {
            var kept = new List<TrainingLayout>();
            foreach (var l in layouts)
            {
                string? why = l.Unfit(config, batch, seq) ?? TrainingLayouts.Incomparable(l, config);
                if (why is null) kept.Add(l);
                else if (allLayouts) skipped.Add(why);
                else throw new UsageException(why);
            }
            layouts = kept.ToArray();
        }
        else if (layout.Unfit(config, batch, seq) is { } why) throw new UsageException(why);

        int startStep = 0;
        if (resume is not null && resumedState is { } state)
        {
            if (state.Batch != batch || state.Sequence != seq)
                throw new UsageException($"{resume} was trained with --batch {state.Batch} --seq {state.Sequence}; resume with the same values");
            if (state.Step >= steps) throw new UsageException($"{resume} has already run {state.Step} steps; ask for more with --steps");
            // The data position is the checkpoint's: a shard or position the data cannot honour is state.json's error.
            try { loader.Seek(state.Shard, state.Position); }
            catch (ArgumentException e) { throw new InvalidDataException($"{TrainingCheckpoint.StatePath(resume)}: {e.Message}"); }
            startStep = state.Step;
        }

        using var trace = TraceFile.Start(tracePath);
        using var device = DeviceRegistry.Open(deviceName);
        if (layouts is not null)
            return LayoutTable(layouts, skipped, device, weights, loader, batch, seq, steps, new AdamWSettings((float)lr, (float)beta1, (float)beta2, (float)eps, (float)weightDecay),
                (float)gradClip, dtype, json, line, plotPath, quiet);
        var schedule = new LearningRateSchedule((float)lr, warmup, cosine, (float)minLr, steps);
        var settings = new AdamWSettings((float)lr, (float)beta1, (float)beta2, (float)eps, (float)weightDecay);
        var run = new RunSettings(batch, seq, steps, startStep, schedule, settings, (float)gradClip, valEvery, valBatches, checkpoint, checkpointEvery);
        var options = layout.Options(dtype, recompute, (long)(bucketMb * 1048576));

        string Describe(ParallelTrainer t, string transport)
        {
            var parts = new List<string>();
            if (layout.Dp > 1) parts.Add(layout.Zero == 1 ? $"dp={layout.Dp} with ZeRO-1 (gradients reduce-scattered, AdamW state and update sharded, weights all-gathered)"
                : $"dp={layout.Dp} (gradients all-reduced in {bucketMb:G3} MiB buckets during backward)");
            if (layout.Tp > 1) parts.Add($"tp={layout.Tp} (Megatron column/row-parallel layers{(layout.Sp ? ", sequence-parallel: norms and residual on 1/tp of the tokens" : "")})");
            if (layout.Pp > 1) parts.Add($"pp={layout.Pp} ({layout.Schedule.Name()} over {layout.MicroBatches} micro-batches of {batch / layout.Dp / layout.MicroBatches} rows, bubble {t.Bubble:P0})");
            else if (layout.MicroBatches > 1) parts.Add($"{layout.MicroBatches} micro-batches of {batch / layout.Dp / layout.MicroBatches} rows, gradients accumulated");
            return parts.Count == 0 ? "" : $"; {string.Join(", ", parts)}: {layout.Ranks} ranks {transport}";
        }
        void Header(ParallelTrainer t, string transport)
        {
            var trainer = t.Trainer;
            Console.WriteLine($"model   {(weightsFolder is null ? "" : weightsFolder + ": ")}Llama-style decoder: {config.Layers} layers, hidden {config.Hidden}, heads {config.Heads} (kv {config.KvHeads}), " +
                              $"ffn {config.Ffn}{Experts(config)}, vocab {config.Vocab}, {(dtype == DType.F32 ? "f32" : "bf16 (f32 master weights and AdamW moments)")}, {config.Parameters / 1e6:F2} M parameters{(weightsFolder is null ? $", seed {seed}" : "")}");
            Console.WriteLine($"device  {device.Name}: {device.Description}{Describe(t, transport)}");
            Console.WriteLine($"data    {string.Join(", ", loader.Files)}: batch {batch} × seq {seq} = {batch * seq} tokens per step" +
                              (layout.Dp > 1 ? $", {batch / layout.Dp} rows per replica" : "") +
                              (resume is null ? "" : $", resumed at step {startStep} (shard {loader.Shard}, position {loader.Position})"));
            Console.WriteLine($"optim   AdamW lr {lr:G3}{(warmup > 0 ? $", warmup {warmup}" : "")}{(cosine ? $", cosine to {minLr:G3}" : "")}, betas ({beta1}, {beta2}), eps {eps:G3}, " +
                              $"weight decay {weightDecay} (2-D tensors), grad clip {(gradClip > 0 ? gradClip.ToString() : "off")}");
            Console.WriteLine($"memory  {(layout.Ranks > 1 ? "rank 0: " : "")}parameters {Mib(trainer.ParameterBytes)}, gradients {Mib(trainer.GradientBytes)}, optimizer {Mib(t.OptimizerBytes)}{(layout.Zero == 1 ? $" (1/{layout.Dp}: ZeRO-1)" : "")}, " +
                              $"activations {Mib(t.ActivationBytes)} ({trainer.ActivationSlots} micro-batch{(trainer.ActivationSlots > 1 ? "es" : "")} in flight; " +
                              $"{(recompute ? "--recompute: the residual stream kept, the rest recomputed layer by layer" : "kept for backward")}), backward scratch {Mib(trainer.ScratchBytes)}");
        }

        // Every rank reads the same global batches from its own loader and takes its rows, all from where the run
        // starts: taken now, because rank 0's loader moves on as soon as its first step begins.
        var (startShard, startPosition) = (loader.Shard, loader.Position);
        TokenLoader OpenLoader(string pattern, bool training)
        {
            var l = new TokenLoader(TokenShard.Expand(pattern), batch, seq);
            l.CheckVocabulary(config.Vocab);
            if (training && resume is not null) l.Seek(startShard, startPosition);
            return l;
        }

        List<StepRecord>? records = null;
        // One rank: its mesh and trainer, the step loop, the files at the end (a collective: every rank takes part).
        void Rank(NativeParallel.Comm.ProcessGroup world, bool firstLocal, string transport)
        {
            using var mesh = NativeParallel.Comm.DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, device, weights, batch, seq, options);
            if (resume is not null) TrainingCheckpoint.LoadMoments(resume, trainer);
            bool print = world.Rank == 0;
            if (print) Header(trainer, transport);
            List<StepRecord> mine;
            using (var progress = print ? WorkProgress.Start("train", steps - startStep, "steps", quiet) : null)
                mine = TrainLoop(trainer, device, firstLocal ? loader : OpenLoader(data, true),
                    valData is null ? null : firstLocal ? validation : OpenLoader(valData, false), run, print, progress);
            if (checkpoint is not null)
            {
                TrainingCheckpoint.Save(checkpoint, trainer, new TrainingCheckpoint.State(steps, loader.Shard, loader.Position, batch, seq));
                if (print) Console.WriteLine($"checkpoint {checkpoint} (weights, AdamW moments, step {steps}, data position; continue with --resume {checkpoint}, in any layout)");
            }
            if (save is not null)
            {
                TrainingCheckpoint.Save(save, trainer, null);
                if (print) Console.WriteLine($"saved   {save} (config.json + model.safetensors{(layout.Ranks > 1 ? ", every rank's part merged" : "")}; 'nativeparallel run --model {save}' generates from it)");
            }
            if (!print) return;
            records = mine;
            Finish(trainer);
        }

        if (launched is null)
        {
            NativeParallel.Comm.ProcessGroup.RunOnThreadRanks(layout.Ranks, world => Rank(world, world.Rank == 0, "as threads sharing it"), "train");
            TraceFile.PrintHiddenShare(Console.Out);
        }
        else
        {
            using var world = NativeParallel.Comm.ProcessGroup.FromEnvironment("train");
            Rank(world, firstLocal: true, $"as processes over {world.TransportName}");
            // Nobody leaves before rank 0 has written its files.
            world.Barrier();
            if (world.Rank == 0) TraceFile.PrintHiddenShare(Console.Out);
        }

        void Finish(ParallelTrainer t)
        {
            var trainer = t.Trainer;
            JsonReport.Write(json, "train", line, new
            {
                Model = new { config.Layers, config.Hidden, config.Heads, config.KvHeads, config.Ffn, config.Vocab, config.Parameters },
                Device = device.Name,
                Layout = layout.Name,
                DataParallel = layout.Dp,
                TensorParallel = layout.Tp,
                PipelineParallel = layout.Pp,
                MicroBatches = layout.MicroBatches,
                Schedule = layout.Pp > 1 ? layout.Schedule.Name() : null,
                Data = loader.Files,
                Batch = batch,
                Sequence = seq,
                Dtype = dtype.Name(),
                Optimizer = new { Name = "adamw", Lr = lr, Beta1 = beta1, Beta2 = beta2, Eps = eps, WeightDecay = weightDecay, GradClip = gradClip, Warmup = warmup, Cosine = cosine, MinLr = minLr },
                Recompute = recompute,
                Zero = layout.Zero,
                Memory = new { trainer.ParameterBytes, trainer.GradientBytes, t.OptimizerBytes, t.ActivationBytes, trainer.ScratchBytes },
                Steps = records,
            });
            if (plotPath is not null && records is not null)
                TrainingLossPlot.Save(plotPath, $"train: {layout.Name} on {device.Name}, batch {batch} x seq {seq}",
                    [new LossCurve(layout.Name, records.Select(r => (r.Step, r.Loss)).ToList(),
                        records.Where(r => r.ValLoss is not null).Select(r => (r.Step, r.ValLoss!.Value)).ToList())]);
        }
        return 0;
    }

    // The seed's four axes for training: every layout on thread ranks sharing the device, the same steps, measured
    // beside the formulas, each checked against the single-device losses.
    private static int LayoutTable(TrainingLayout[] layouts, IReadOnlyList<string> skipped, IDevice device, LlamaWeights weights, TokenLoader loader, int batch, int seq, int steps,
        AdamWSettings settings, float gradClip, DType dtype, string? json, CommandLine line, string? plotPath, bool quiet)
    {
        var batches = new List<(int[], int[])>();
        for (int i = 0; i < steps; i++)
        {
            var inputs = new int[batch * seq];
            var targets = new int[batch * seq];
            loader.Next(inputs, targets);
            batches.Add((inputs, targets));
        }
        var c = weights.Config;
        Console.WriteLine($"model   Llama-style decoder: {c.Layers} layers, hidden {c.Hidden}, heads {c.Heads} (kv {c.KvHeads}), ffn {c.Ffn}{Experts(c)}, vocab {c.Vocab}, " +
                          $"{dtype.Name()}, {c.Parameters / 1e6:F2} M parameters");
        Console.WriteLine($"training layouts: batch {batch} × seq {seq}, {steps} AdamW steps each from the same weights and data, ranks are threads sharing {device.Name}; " +
                          "each checked against the single-device losses");
        foreach (string why in skipped) Console.WriteLine($"skipped {why}");
        Console.WriteLine($"{"layout",-26} {"ranks",5} {"memory/rank",12} {"activations",12} {"sent/rank/step",15} {"predicted",12} {"ms/step",9} {"tokens/s",9} {"bubble",7}  check");
        using var progress = WorkProgress.Start("train --strategy", layouts.Length + 1, "layouts", quiet);
        var single = TrainingLayouts.Run(new TrainingLayout(), device, weights, batch, seq, batches, settings, gradClip, null, dtype);
        var results = new List<TrainingLayoutResult> { single };
        bool ok = true;
        void Print(TrainingLayoutResult r)
        {
            bool pass = r.MaxLossError <= (dtype == DType.F32 ? 1e-4 : 3e-2) && r.ReplicasIdentical;
            ok &= pass;
            Console.WriteLine($"{r.Layout.Name,-26} {r.Layout.Ranks,5} {Mib(r.MemoryPerRank),12} {Mib(r.ActivationsPerRank),12} {Bytes(r.SentPerRankPerStep),15} {Bytes(r.PredictedPerRankPerStep),12} " +
                              $"{r.MsPerStep,9:F1} {batch * seq / (r.MsPerStep / 1000),9:F0} {r.Bubble,6:P0}  {(pass ? "ok" : "FAIL")} (loss rel err {r.MaxLossError:E1}" +
                              $"{(r.ReplicasIdentical ? "" : r.Layout.Ep > 1 ? "; the weights the ranks share differ" : "; data-parallel replicas differ")})");
        }
        Print(single);
        progress.Advance(single.Layout.Name);
        foreach (var layout in layouts)
        {
            var r = TrainingLayouts.Run(layout, device, weights, batch, seq, batches, settings, gradClip, single.Losses, dtype);
            results.Add(r);
            Print(r);
            progress.Advance(layout.Name);
        }
        progress.Dispose();
        Console.WriteLine("memory/rank: the fullest rank's parameters, gradients, optimizer state, activations and scratch; activations: its micro-batches " +
                          "in flight (GPipe holds all m, 1F1B at most p); sent: bytes every rank sent per step, headers and agreement checks included; " +
                          "predicted: the ring formulas' payload (DP 2(n-1)/n of the gradients; ZeRO-1 reduce-scatter plus all-gather; TP 4 all-reduces of " +
                          "the hidden state per layer and the vocabulary-parallel embedding, head and cross-entropy's; PP activations and their gradients across each boundary; " +
                          "EP the shared gradients' all-reduce and four all-to-alls of the routed rows per MoE layer, at an even spread over the experts); all-reduces up to 64 KiB go one-shot, " +
                          "which sends more than the ring; check: losses against the single device and data-parallel replicas bitwise equal (under ep, all but each rank's own experts); " +
                          "timings on shared cores say little.");
        JsonReport.Write(json, "train", line, new
        {
            Batch = batch,
            Sequence = seq,
            Steps = steps,
            Device = device.Name,
            Skipped = skipped,
            Layouts = results.Select(r => new
            {
                r.Layout.Name, r.Layout.Ranks, r.MemoryPerRank, r.ActivationsPerRank, r.SentPerRankPerStep, r.PredictedPerRankPerStep, r.MsPerStep, r.Bubble, r.Losses,
                r.MaxLossError, r.ReplicasIdentical,
            }),
            Ok = ok,
        });
        if (plotPath is not null)
            TrainingLossPlot.Save(plotPath, $"train: {results.Count} layouts on {device.Name}, batch {batch} x seq {seq}, the same weights and data",
                results.Select(r => new LossCurve(r.Layout.Name, r.Losses.Select((loss, i) => (i + 1, loss)).ToList(), [])).ToList());
        return ok ? 0 : 1;
    }

    private static string Bytes(double bytes) => bytes >= 1 << 20 ? $"{bytes / 1048576.0:F2} MiB" : bytes >= 1 << 10 ? $"{bytes / 1024.0:F1} KiB" : $"{bytes:F0} B";

    private sealed record RunSettings(int Batch, int Sequence, int Steps, int StartStep, LearningRateSchedule Schedule, AdamWSettings Settings,
        float GradClip, int ValEvery, int ValBatches, string? Checkpoint, int CheckpointEvery);

    // The step loop of one rank; only the printing rank writes step lines. Intermediate checkpoints are collectives.
    private static List<StepRecord> TrainLoop(ParallelTrainer trainer, IDevice device, TokenLoader loader, TokenLoader? validation, RunSettings o, bool print,
        WorkProgress? progress)
    {
        var inputs = new int[o.Batch * o.Sequence];
        var targets = new int[o.Batch * o.Sequence];
        var records = new List<StepRecord>();
        var clock = new Stopwatch();
        for (int step = o.StartStep; step < o.Steps; step++)
        {
            loader.Next(inputs, targets);
            float rate = o.Schedule.At(step);
            clock.Restart();
            var result = trainer.Step(inputs, targets, o.Settings with { LearningRate = rate }, step + 1, o.GradClip);
            device.Synchronize();
            double ms = clock.Elapsed.TotalMilliseconds;
            if (!double.IsFinite(result.Loss) || !double.IsFinite(result.GradNorm))
                throw new InvalidOperationException($"step {step + 1}: loss {result.Loss} or gradient norm {result.GradNorm} is not finite (lower --lr or keep --grad-clip on)");
            double? valLoss = validation is not null && o.ValEvery > 0 && ((step + 1) % o.ValEvery == 0 || step + 1 == o.Steps)
                ? Validate(trainer, validation, o.ValBatches) : null;
            records.Add(new StepRecord(step + 1, result.Loss, result.GradNorm, rate, ms, o.Batch * o.Sequence / (ms / 1000), valLoss));
            if (print)
                Console.WriteLine($"step {step + 1,5}/{o.Steps} | loss {result.Loss:F4} | norm {result.GradNorm:F4}{(result.ClipCoefficient < 1 ? " (clipped)" : "")} | " +
                                  $"lr {rate:E2} | {ms,8:F1} ms | {o.Batch * o.Sequence / (ms / 1000),8:F0} tok/s{(valLoss is { } v ? $" | val loss {v:F4}" : "")}");
            if (o.Checkpoint is not null && o.CheckpointEvery > 0 && (step + 1) % o.CheckpointEvery == 0 && step + 1 < o.Steps)
                TrainingCheckpoint.Save(o.Checkpoint, trainer, new TrainingCheckpoint.State(step + 1, loader.Shard, loader.Position, o.Batch, o.Sequence));
            progress?.Advance($"step {step + 1}, loss {result.Loss:F4}");
        }
        return records;
    }

    private sealed record StepRecord(int Step, double Loss, double GradNorm, float Lr, double Ms, double TokensPerSecond, double? ValLoss);

    // Mean loss over the first `batches` batches of the validation shards (the same batches every time).
    private static double Validate(ParallelTrainer trainer, TokenLoader validation, int batches)
    {
        var inputs = new int[validation.Batch * validation.Sequence];
        var targets = new int[inputs.Length];
        validation.Seek(0, 0);
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            validation.Next(inputs, targets);
            sum += trainer.Evaluate(inputs, targets);
        }
        return sum / batches;
    }

    private static LlamaWeights ToF32(LlamaWeights w) =>
        new(w.Config with { DType = DType.F32 }, w.Embedding, w.Layers, w.FinalNorm, w.LmHead);

    private static string Experts(LlamaConfig c) => c.Experts == 0 ? ""
        : $" in each of {c.Experts} experts (top-{c.ExpertsPerToken}{(c.CapacityFactor > 0 ? $", capacity factor {c.CapacityFactor:G}" : "")})";

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F2} MiB";
}
