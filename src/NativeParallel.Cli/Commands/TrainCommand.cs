using System.Diagnostics;
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

    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? modelFolder = line.Option("model");
        string data = line.Option("data") ?? throw new UsageException("train needs --data FILE|GLOB (llm.c token shards; make one with 'nativeparallel prepare --text FILE --out FILE.bin')");
        string? valData = line.Option("val-data");
        int valEvery = (int)line.Int("val-every", 25);
        int valBatches = (int)line.Int("val-batches", 4);
        int batch = (int)line.Int("batch", 8);
        int seq = (int)line.Int("seq", 64);
        int steps = (int)line.Int("steps", 50);
        double lr = line.Double("lr", 1e-3);
        double weightDecay = line.Double("weight-decay", 0.01);
        double beta1 = line.Double("beta1", 0.9), beta2 = line.Double("beta2", 0.999), eps = line.Double("eps", 1e-8);
        double gradClip = line.Double("grad-clip", 1.0);
        int warmup = (int)line.Int("warmup", 0);
        bool cosine = line.Flag("cosine");
        bool recompute = line.Flag("recompute");
        double minLr = line.Double("min-lr", 0);
        var dtype = DTypes.Parse(line.Option("dtype", "f32")!);
        string? deviceName = line.Option("device");
        ulong seed = (ulong)line.Int("seed", 1234);
        int vocabOption = (int)line.Int("vocab", 0);
        string? save = line.Option("save");
        string? checkpoint = line.Option("checkpoint");
        int checkpointEvery = (int)line.Int("checkpoint-every", 0);
        string? resume = line.Option("resume");
        string? json = line.Option("json");
        int dpOption = (int)line.Int("dp", 0);
        double bucketMb = line.Double("bucket-mb", 25);
        int zero = (int)line.Int("zero", 0);
        int tpOption = (int)line.Int("tp", 1);
        int ppOption = (int)line.Int("pp", 1);
        int microBatches = (int)line.Int("micro-batches", 0);
        string? strategy = line.Option("strategy");
        line.RejectUnknown();
        var layouts = strategy is null ? null
            : (strategy == "all" ? ["dp=2", "dp=2,zero=1", "tp=2", "pp=2,mb=4"] : strategy.Split(';', StringSplitOptions.RemoveEmptyEntries))
                .Select(text => { try { return TrainingLayout.Parse(text); } catch (ArgumentException e) { throw new UsageException(e.Message); } }).ToArray();
        if (layouts is not null && (dpOption > 1 || tpOption > 1 || ppOption > 1 || zero != 0 || save is not null || checkpoint is not null || resume is not null))
            throw new UsageException("--strategy runs the table of training layouts; give the layouts there, without --dp/--tp/--pp/--zero/--save/--checkpoint/--resume");
        if (ppOption < 1 || microBatches < 0) throw new UsageException("--pp must be at least 1 and --micro-batches positive");
        if (ppOption > 1 && (tpOption > 1 || dpOption > 1 || zero != 0))
            throw new UsageException("--pp with --tp, --dp or --zero (3-D layouts) is not implemented yet; use one of them");
        if (ppOption > 1 && (save is not null || checkpoint is not null || resume is not null))
            throw new UsageException("--pp stages hold parts of the model; --save, --checkpoint and --resume with --pp are not implemented yet");
        if (microBatches == 0) microBatches = ppOption > 1 ? ppOption : 1;
        if (ppOption > 1 && batch % microBatches != 0) throw new UsageException($"--batch {batch} is not a multiple of --micro-batches {microBatches}");
        if (tpOption < 1) throw new UsageException("--tp must be at least 1");
        if (tpOption > 1 && (dpOption > 1 || zero != 0))
            throw new UsageException("--tp with --dp or --zero (3-D layouts) is not implemented yet; use one of them");
        if (tpOption > 1 && (save is not null || checkpoint is not null || resume is not null))
            throw new UsageException("--tp ranks hold shards of the model; --save, --checkpoint and --resume with --tp are not implemented yet");
        if (zero is not (0 or 1)) throw new UsageException($"--zero takes 0 or 1 (ZeRO stage 1: optimizer state sharded over data-parallel ranks), got {zero}");
        if (zero == 1 && (checkpoint is not null || resume is not null)) throw new UsageException("--zero 1 cannot --checkpoint or --resume yet (the moments are sharded over ranks); use --save");
        if (dpOption < 0 || bucketMb <= 0) throw new UsageException("--dp must be at least 1 and --bucket-mb positive");

        if (batch < 1 || seq < 1 || steps < 1) throw new UsageException("--batch, --seq and --steps must be at least 1");
        if (lr <= 0 || weightDecay < 0 || gradClip < 0 || minLr < 0 || warmup < 0 || valEvery < 0 || valBatches < 1 || checkpointEvery < 0)
            throw new UsageException("--lr must be positive; --weight-decay, --grad-clip, --min-lr, --warmup, --val-every, --checkpoint-every must not be negative; --val-batches at least 1");
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1 || eps <= 0) throw new UsageException("--beta1 and --beta2 must be in [0, 1), --eps positive");
        if (dtype is not (DType.F32 or DType.BF16)) throw new UsageException($"train runs in f32 or bf16, not {dtype.Name()}");
        if (modelFolder is not null && resume is not null) throw new UsageException("give --model or --resume, not both (a checkpoint folder holds its model)");
        if (checkpointEvery > 0 && checkpoint is null) throw new UsageException("--checkpoint-every needs --checkpoint DIR");

        var loader = new TokenLoader(TokenShard.Expand(data), batch, seq);
        var validation = valData is null ? null : new TokenLoader(TokenShard.Expand(valData), batch, seq);
        string? weightsFolder = resume ?? modelFolder;
        LlamaWeights weights;
        if (weightsFolder is not null)
        {
            weights = HuggingFaceCheckpoint.Load(weightsFolder, Math.Max(256, seq));
            if (weights.Config.DType != DType.F32) weights = ToF32(weights);
        }
        else
        {
            int vocab = vocabOption > 0 ? vocabOption : loader.MaxToken < LlamaConfig.Small.Vocab ? LlamaConfig.Small.Vocab : Math.Max(Gpt2Vocab, loader.MaxToken + 1);
            weights = new LlamaWeights(LlamaConfig.Small with { Vocab = vocab, MaxSequence = Math.Max(256, seq) }, seed);
        }
        var config = weights.Config;
        if (loader.MaxToken >= config.Vocab)
            throw new InvalidDataException($"{loader.Files[0]}: token {loader.MaxToken} is outside the model's vocabulary of {config.Vocab} (give --vocab or a model with a larger vocabulary)");

        int startStep = 0;
        if (resume is not null)
        {
            var state = TrainingCheckpoint.ReadState(resume);
            if (state.Batch != batch || state.Sequence != seq)
                throw new UsageException($"{resume} was trained with --batch {state.Batch} --seq {state.Sequence}; resume with the same values");
            if (state.Step >= steps) throw new UsageException($"{resume} has already run {state.Step} steps; ask for more with --steps");
            loader.Seek(state.Shard, state.Position);
            startStep = state.Step;
        }

        var launched = NativeParallel.Comm.Rendezvous.LaunchEnvironment.Detect();
        if (launched is not null && dpOption > 0 && dpOption != launched.WorldSize)
            throw new UsageException($"inside a launched job every process is one data-parallel rank: --dp {dpOption} differs from the job's {launched.WorldSize} ranks");
        if (launched is not null && tpOption > 1 && tpOption != launched.WorldSize)
            throw new UsageException($"inside a launched job --tp must equal the job's {launched.WorldSize} ranks, got {tpOption}");
        if (launched is not null && ppOption > 1 && ppOption != launched.WorldSize)
            throw new UsageException($"inside a launched job --pp must equal the job's {launched.WorldSize} ranks, got {ppOption}");
        if (ppOption > config.Layers) throw new UsageException($"--pp {ppOption} needs at least one layer per stage; the model has {config.Layers}");
        int dp = tpOption > 1 || ppOption > 1 ? 1 : launched?.WorldSize ?? Math.Max(1, dpOption);
        if (tpOption > 1 && (config.Heads % tpOption != 0 || config.KvHeads % tpOption != 0 || config.Ffn % tpOption != 0))
            throw new UsageException($"--tp {tpOption} must divide the heads ({config.Heads}), kv heads ({config.KvHeads}) and MLP width ({config.Ffn})");
        if (batch % dp != 0) throw new UsageException($"data parallelism splits the batch's rows: --batch {batch} is not a multiple of dp={dp}");

        using var device = DeviceRegistry.Open(deviceName);
        if (layouts is not null)
        {
            foreach (var l in layouts)
            {
                if (batch % (l.Dp * l.MicroBatches) != 0) throw new UsageException($"{l.Name}: --batch {batch} does not split into its {l.Dp * l.MicroBatches} parts");
                if (l.Tp > 1 && (config.Heads % l.Tp != 0 || config.KvHeads % l.Tp != 0 || config.Ffn % l.Tp != 0))
                    throw new UsageException($"{l.Name}: tp must divide heads ({config.Heads}), kv heads ({config.KvHeads}) and ffn ({config.Ffn})");
                if (l.Pp > config.Layers) throw new UsageException($"{l.Name}: {config.Layers} layers cannot fill {l.Pp} stages");
            }
            return LayoutTable(layouts, device, weights, loader, batch, seq, steps, new AdamWSettings((float)lr, (float)beta1, (float)beta2, (float)eps, (float)weightDecay),
                (float)gradClip, dtype, json);
        }
        var schedule = new LearningRateSchedule((float)lr, warmup, cosine, (float)minLr, steps);
        var settings = new AdamWSettings((float)lr, (float)beta1, (float)beta2, (float)eps, (float)weightDecay);
        var run = new RunSettings(batch, seq, steps, startStep, schedule, settings, (float)gradClip, valEvery, valBatches, checkpoint, checkpointEvery,
            recompute, dtype, (long)(bucketMb * 1048576), zero);

        LlamaTrainer? single = null;
        void Header(DataParallelTrainer? replica, string ranks)
        {
            var trainer = replica?.Trainer ?? single!;
            Console.WriteLine($"model   {(weightsFolder is null ? "" : weightsFolder + ": ")}Llama-style decoder: {config.Layers} layers, hidden {config.Hidden}, heads {config.Heads} (kv {config.KvHeads}), " +
                              $"ffn {config.Ffn}, vocab {config.Vocab}, {(dtype == DType.F32 ? "f32" : "bf16 (f32 master weights and AdamW moments)")}, {config.Parameters / 1e6:F2} M parameters{(weightsFolder is null ? $", seed {seed}" : "")}");
            Console.WriteLine($"device  {device.Name}: {device.Description}{ranks}");
            Console.WriteLine($"data    {string.Join(", ", loader.Files)}: batch {batch} × seq {seq} = {batch * seq} tokens per step" +
                              (dp > 1 ? $", {batch / dp} rows per rank" : "") +
                              (resume is null ? "" : $", resumed at step {startStep} (shard {loader.Shard}, position {loader.Position})"));
            Console.WriteLine($"optim   AdamW lr {lr:G3}{(warmup > 0 ? $", warmup {warmup}" : "")}{(cosine ? $", cosine to {minLr:G3}" : "")}, betas ({beta1}, {beta2}), eps {eps:G3}, " +
                              $"weight decay {weightDecay} (2-D tensors), grad clip {(gradClip > 0 ? gradClip.ToString() : "off")}");
            Console.WriteLine($"memory  {(dp > 1 || tpOption > 1 || ppOption > 1 ? "per rank: " : "")}parameters {Mib(trainer.ParameterBytes)}, gradients {Mib(trainer.GradientBytes)}, optimizer {Mib(replica?.OptimizerBytes ?? trainer.OptimizerBytes)}{(zero == 1 ? $" (1/{dp}: ZeRO-1)" : "")}, " +
                              $"activations {Mib(trainer.ActivationBytes)} ({(recompute ? "--recompute: the residual stream kept, the rest recomputed layer by layer" : "kept for backward")}), " +
                              $"backward scratch {Mib(trainer.ScratchBytes)}");
        }

        // Every rank reads the same global batches from its own loader and takes its rows.
        TokenLoader OpenLoader(string pattern, bool training)
        {
            var l = new TokenLoader(TokenShard.Expand(pattern), batch, seq);
            if (training && resume is not null) l.Seek(loader.Shard, loader.Position);
            return l;
        }

        List<StepRecord> records;
        if (ppOption > 1)
        {
            // GPipe pipeline parallelism: thread ranks sharing the device, or the processes of a launched job.
            var groups = launched is null
                ? NativeParallel.Comm.ProcessGroup.CreateThreadGroup(ppOption, "pp")
                : [NativeParallel.Comm.ProcessGroup.FromEnvironment("pp")];
            var stages = new PipelineTrainer[groups.Length];
            var perRank = new List<StepRecord>[groups.Length];
            try
            {
                for (int i = 0; i < groups.Length; i++) stages[i] = new PipelineTrainer(groups[i], device, weights, batch, seq, microBatches, recompute, dtype);
                bool lead = groups[0].Rank == 0;
                single = stages[0].Trainer;
                string layout = $"pp={ppOption}, GPipe over {microBatches} micro-batches of {batch / microBatches} rows (bubble {stages[0].Bubble:P0}); " +
                                "memory below is stage 0's";
                if (lead) Header(null, launched is null ? $"; {layout}, stages as threads sharing it" : $"; rank 0 of {layout}, over {groups[0].TransportName}");
                Task.WaitAll(Enumerable.Range(0, groups.Length).Select(i => Task.Run(() =>
                    perRank[i] = TrainLoop(new Replica(stages[i].Trainer, null, stages[i]), device, i == 0 ? loader : OpenLoader(data, true),
                        valData is null ? null : i == 0 ? validation : OpenLoader(valData, false), run, print: groups[i].Rank == 0))).ToArray());
                records = perRank[0];
                if (lead) Finish(stages[0].Trainer, stages[0].Trainer.OptimizerBytes);
            }
            finally
            {
                foreach (var st in stages) st?.Dispose();
                foreach (var g in groups) g.Dispose();
            }
        }
        else if (tpOption > 1)
        {
            // Megatron tensor parallelism: thread ranks sharing the device, or the processes of a launched job.
            var groups = launched is null
                ? NativeParallel.Comm.ProcessGroup.CreateThreadGroup(tpOption, "tp")
                : [NativeParallel.Comm.ProcessGroup.FromEnvironment("tp")];
            var ranks = new LlamaTrainer[groups.Length];
            var perRank = new List<StepRecord>[groups.Length];
            try
            {
                for (int i = 0; i < groups.Length; i++) ranks[i] = new LlamaTrainer(device, weights, batch, seq, recompute, dtype, tensorParallel: groups[i]);
                bool lead = groups[0].Rank == 0;
                single = ranks[0];
                if (lead) Header(null, launched is null ? $"; tp={tpOption}: {tpOption} ranks as threads sharing it (Megatron column/row-parallel layers)"
                    : $"; rank 0 of tp={tpOption} processes over {groups[0].TransportName}");
                Task.WaitAll(Enumerable.Range(0, groups.Length).Select(i => Task.Run(() =>
                    perRank[i] = TrainLoop(new Replica(ranks[i], null), device, i == 0 ? loader : OpenLoader(data, true),
                        valData is null ? null : i == 0 ? validation : OpenLoader(valData, false), run, print: groups[i].Rank == 0))).ToArray());
                records = perRank[0];
                if (lead) Finish(ranks[0], ranks[0].OptimizerBytes);
            }
            finally
            {
                foreach (var r in ranks) r?.Dispose();
                foreach (var g in groups) g.Dispose();
            }
        }
        else if (dp == 1 && launched is null)
        {
            if (zero == 1) throw new UsageException("--zero 1 shards the optimizer over data-parallel ranks: give --dp N (N > 1) or launch several processes");
            using var trainer = new LlamaTrainer(device, weights, batch, seq, recompute, dtype);
            single = trainer;
            if (resume is not null) TrainingCheckpoint.LoadMoments(resume, trainer);
            Header(null, "");
            var replica = new Replica(trainer, null);
            records = TrainLoop(replica, device, loader, validation, run, print: true);
            Finish(trainer, trainer.OptimizerBytes);
        }
        else if (launched is null)
        {
            // dp thread ranks sharing the device.
            var groups = NativeParallel.Comm.ProcessGroup.CreateThreadGroup(dp, "dp");
            var perRank = new List<StepRecord>[dp];
            var replicas = new DataParallelTrainer[dp];
            try
            {
                for (int r = 0; r < dp; r++)
                {
                    replicas[r] = new DataParallelTrainer(groups[r], device, weights, batch, seq, run.BucketBytes, recompute, dtype, zero);
                    if (resume is not null) TrainingCheckpoint.LoadMoments(resume, replicas[r].Trainer);
                }
                Header(replicas[0], $"; dp={dp}: {dp} ranks as threads sharing it, " +
                    (zero == 1 ? "ZeRO-1: gradients reduce-scattered, AdamW state and update sharded, weights all-gathered" : $"gradients all-reduced in {bucketMb:G3} MiB buckets during backward"));
                Task.WaitAll(Enumerable.Range(0, dp).Select(r => Task.Run(() =>
                    perRank[r] = TrainLoop(new Replica(replicas[r].Trainer, replicas[r]), device, r == 0 ? loader : OpenLoader(data, true),
                        valData is null ? null : r == 0 ? validation : OpenLoader(valData, false), run, print: r == 0))).ToArray());
                records = perRank[0];
                Finish(replicas[0].Trainer, replicas[0].OptimizerBytes);
            }
            finally
            {
                foreach (var replica in replicas) replica?.Dispose();
                foreach (var g in groups) g.Dispose();
            }
        }
        else
        {
            // One rank of a launched job (launch, torchrun, mpirun): the world is the data-parallel group.
            using var world = NativeParallel.Comm.ProcessGroup.FromEnvironment("dp");
            using var replica = new DataParallelTrainer(world, device, weights, batch, seq, run.BucketBytes, recompute, dtype, zero);
            if (resume is not null) TrainingCheckpoint.LoadMoments(resume, replica.Trainer);
            bool print = world.Rank == 0;
            if (print) Header(replica, $"; rank 0 of dp={world.Size} processes over {world.TransportName}{(zero == 1 ? ", ZeRO-1" : "")}");
            records = TrainLoop(new Replica(replica.Trainer, replica), device, loader, validation, run, print);
            if (print) Finish(replica.Trainer, replica.OptimizerBytes);
            // Nobody leaves before rank 0 has written its files.
            world.Barrier();
        }

        void Finish(LlamaTrainer trainer, long optimizerBytes)
        {
            if (checkpoint is not null)
            {
                TrainingCheckpoint.Save(checkpoint, trainer, new TrainingCheckpoint.State(steps, loader.Shard, loader.Position, batch, seq));
                Console.WriteLine($"checkpoint {checkpoint} (weights, AdamW moments, step {steps}, data position; continue with --resume {checkpoint})");
            }
            if (save is not null)
            {
                TrainingCheckpoint.Save(save, trainer, null);
                Console.WriteLine($"saved   {save} (config.json + model.safetensors; 'nativeparallel run --model {save}' generates from it)");
            }
            JsonReport.Write(json, new
            {
                Command = "train",
                Model = new { config.Layers, config.Hidden, config.Heads, config.KvHeads, config.Ffn, config.Vocab, config.Parameters },
                Device = device.Name,
                DataParallel = dp,
                TensorParallel = tpOption,
                PipelineParallel = ppOption,
                MicroBatches = microBatches,
                Data = loader.Files,
                Batch = batch,
                Sequence = seq,
                Dtype = dtype.Name(),
                Optimizer = new { Name = "adamw", Lr = lr, Beta1 = beta1, Beta2 = beta2, Eps = eps, WeightDecay = weightDecay, GradClip = gradClip, Warmup = warmup, Cosine = cosine, MinLr = minLr },
                Recompute = recompute,
                Zero = zero,
                Memory = new { trainer.ParameterBytes, trainer.GradientBytes, OptimizerBytes = optimizerBytes, trainer.ActivationBytes, trainer.ScratchBytes },
                Steps = records,
            });
        }
        return 0;
    }

    // The seed's four axes for training: every layout on thread ranks sharing the device, the same steps, measured
    // beside the formulas, each checked against the single-device losses.
    private static int LayoutTable(TrainingLayout[] layouts, IDevice device, LlamaWeights weights, TokenLoader loader, int batch, int seq, int steps,
        AdamWSettings settings, float gradClip, DType dtype, string? json)
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
        Console.WriteLine($"model   Llama-style decoder: {c.Layers} layers, hidden {c.Hidden}, heads {c.Heads} (kv {c.KvHeads}), ffn {c.Ffn}, vocab {c.Vocab}, " +
                          $"{dtype.Name()}, {c.Parameters / 1e6:F2} M parameters");
        Console.WriteLine($"training layouts: batch {batch} × seq {seq}, {steps} AdamW steps each from the same weights and data, ranks are threads sharing {device.Name}; " +
                          "each checked against the single-device losses");
        Console.WriteLine($"{"layout",-14} {"ranks",5} {"memory/rank",12} {"sent/rank/step",15} {"predicted",12} {"ms/step",9} {"tokens/s",9} {"bubble",7}  check");
        var single = TrainingLayouts.Run(new TrainingLayout(), device, weights, batch, seq, batches, settings, gradClip, null, dtype);
        var results = new List<TrainingLayoutResult> { single };
        bool ok = true;
        void Print(TrainingLayoutResult r)
        {
            bool pass = r.MaxLossError <= (dtype == DType.F32 ? 1e-4 : 3e-2);
            ok &= pass;
            Console.WriteLine($"{r.Layout.Name,-14} {r.Layout.Ranks,5} {Mib(r.MemoryPerRank),12} {Bytes(r.SentPerRankPerStep),15} {Bytes(r.PredictedPerRankPerStep),12} " +
                              $"{r.MsPerStep,9:F1} {batch * seq / (r.MsPerStep / 1000),9:F0} {r.Bubble,6:P0}  {(pass ? "ok" : "FAIL")} (loss rel err {r.MaxLossError:E1})");
        }
        Print(single);
        foreach (var layout in layouts)
        {
            var r = TrainingLayouts.Run(layout, device, weights, batch, seq, batches, settings, gradClip, single.Losses, dtype);
            results.Add(r);
            Print(r);
        }
        Console.WriteLine("memory/rank: rank 0's parameters, gradients, optimizer state, activations and scratch; sent: bytes every rank sent per step, " +
                          "headers and agreement checks included; predicted: the ring formulas' payload (DP 2(n-1)/n of the gradients; ZeRO-1 reduce-scatter " +
                          "plus all-gather; TP 4 all-reduces of the hidden state per layer; PP activations and their gradients across each boundary); " +
                          "all-reduces up to 64 KiB go one-shot, which sends more than the ring; timings on shared cores say little.");
        JsonReport.Write(json, new
        {
            Command = "train --strategy",
            Batch = batch,
            Sequence = seq,
            Steps = steps,
            Device = device.Name,
            Layouts = results.Select(r => new
            {
                r.Layout.Name, r.Layout.Ranks, r.MemoryPerRank, r.SentPerRankPerStep, r.PredictedPerRankPerStep, r.MsPerStep, r.Bubble, r.Losses, r.MaxLossError,
            }),
            Ok = ok,
        });
        return ok ? 0 : 1;
    }

    private static string Bytes(double bytes) => bytes >= 1 << 20 ? $"{bytes / 1048576.0:F2} MiB" : bytes >= 1 << 10 ? $"{bytes / 1024.0:F1} KiB" : $"{bytes:F0} B";

    private sealed record RunSettings(int Batch, int Sequence, int Steps, int StartStep, LearningRateSchedule Schedule, AdamWSettings Settings,
        float GradClip, int ValEvery, int ValBatches, string? Checkpoint, int CheckpointEvery, bool Recompute, DType DType, long BucketBytes, int Zero);

    /// <summary>One rank's model: the single-device trainer, or a data-parallel replica of it.</summary>
    private sealed record Replica(LlamaTrainer Trainer, DataParallelTrainer? DataParallel, PipelineTrainer? Pipeline = null)
    {
        public StepResult Step(int[] inputs, int[] targets, AdamWSettings settings, int step, float clip) =>
            Pipeline?.Step(inputs, targets, settings, step, clip) ?? DataParallel?.Step(inputs, targets, settings, step, clip)
            ?? Trainer.Step(inputs, targets, settings, step, clip);

        public double Evaluate(int[] inputs, int[] targets) =>
            Pipeline?.Evaluate(inputs, targets) ?? DataParallel?.Evaluate(inputs, targets) ?? Trainer.Forward(inputs, targets);
    }

    // The step loop of one rank; only the printing rank writes step lines and intermediate checkpoints.
    private static List<StepRecord> TrainLoop(Replica replica, IDevice device, TokenLoader loader, TokenLoader? validation, RunSettings o, bool print)
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
            var result = replica.Step(inputs, targets, o.Settings with { LearningRate = rate }, step + 1, o.GradClip);
            device.Synchronize();
            double ms = clock.Elapsed.TotalMilliseconds;
            if (!double.IsFinite(result.Loss) || !double.IsFinite(result.GradNorm))
                throw new InvalidOperationException($"step {step + 1}: loss {result.Loss} or gradient norm {result.GradNorm} is not finite (lower --lr or keep --grad-clip on)");
            double? valLoss = validation is not null && o.ValEvery > 0 && ((step + 1) % o.ValEvery == 0 || step + 1 == o.Steps)
                ? Validate(replica, validation, o.ValBatches) : null;
            records.Add(new StepRecord(step + 1, result.Loss, result.GradNorm, rate, ms, o.Batch * o.Sequence / (ms / 1000), valLoss));
            if (!print) continue;
            Console.WriteLine($"step {step + 1,5}/{o.Steps} | loss {result.Loss:F4} | norm {result.GradNorm:F4}{(result.ClipCoefficient < 1 ? " (clipped)" : "")} | " +
                              $"lr {rate:E2} | {ms,8:F1} ms | {o.Batch * o.Sequence / (ms / 1000),8:F0} tok/s{(valLoss is { } v ? $" | val loss {v:F4}" : "")}");
            if (o.Checkpoint is not null && o.CheckpointEvery > 0 && (step + 1) % o.CheckpointEvery == 0 && step + 1 < o.Steps)
                TrainingCheckpoint.Save(o.Checkpoint, replica.Trainer, new TrainingCheckpoint.State(step + 1, loader.Shard, loader.Position, o.Batch, o.Sequence));
        }
        return records;
    }

    private sealed record StepRecord(int Step, double Loss, double GradNorm, float Lr, double Ms, double TokensPerSecond, double? ValLoss);

    // Mean loss over the first `batches` batches of the validation shards (the same batches every time).
    private static double Validate(Replica replica, TokenLoader validation, int batches)
    {
        var inputs = new int[validation.Batch * validation.Sequence];
        var targets = new int[inputs.Length];
        validation.Seek(0, 0);
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            validation.Next(inputs, targets);
            sum += replica.Evaluate(inputs, targets);
        }
        return sum / batches;
    }

    private static LlamaWeights ToF32(LlamaWeights w) =>
        new(w.Config with { DType = DType.F32 }, w.Embedding, w.Layers, w.FinalNorm, w.LmHead);

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F2} MiB";
}
