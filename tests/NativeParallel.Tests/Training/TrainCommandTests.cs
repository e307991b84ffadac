using NativeParallel.Cli;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary><c>prepare</c> and <c>train</c> as a user runs them, in process with the output captured.</summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class TrainCommandTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-train-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static (int Code, string Output) Run(params string[] args) => Cli.InProcessCli.Run(args);

    private static double[] Losses(string output) =>
        output.Split('\n').Where(l => l.StartsWith("step ", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split("| loss ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    [Fact]
    public void LossOnRealTextFallsByAThirdAndTheSavedModelRuns()
    {
        Hardware.RequireFortunes();
        string shard = Path.Combine(_folder, "fortunes.bin"), val = Path.Combine(_folder, "fortunes_val.bin");
        var (code, output) = Run("prepare", "--text", Hardware.FortunesFolder, "--out", shard, "--val-out", val);
        Assert.True(code == 0, output);
        Assert.Contains("GPT-2 BPE", output);
        var tokens = TokenShard.Read(shard);
        Assert.True(tokens.Length > 100_000, $"the fortunes corpus gave only {tokens.Length} tokens");
        Assert.Equal(50256, tokens[0]); // every document starts with <|endoftext|>

        string saved = Path.Combine(_folder, "model");
        (code, output) = Run("train", "--data", shard, "--val-data", val, "--val-every", "40", "--steps", "40", "--batch", "4", "--seq", "64",
            "--lr", "3e-3", "--device", "cpu", "--save", saved);
        Assert.True(code == 0, output);
        var losses = Losses(output);
        Assert.Equal(40, losses.Length);
        Assert.Contains("vocab 50257", output);
        // The held-back shard's loss (4 batches of documents never trained on) against the first step's.
        double first = losses[0];
        double validation = double.Parse(output.Split("val loss ")[1].Split('\n')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(validation <= first * 2 / 3, $"validation loss {validation:F3} after 40 steps against {first:F3} at the first: it should fall by at least a third\n{output}");

        (code, output) = Run("run", "--model", saved, "--device", "cpu", "--strategy", "dp=2", "--new-tokens", "4", "--prompt-tokens", "8");
        Assert.True(code == 0, output);
        Assert.Contains("greedy tokens vs host reference", output);
    }

    [Fact]
    public void CheckpointAndResumePrintTheSameStepsAsOneRun()
    {
        string shard = Path.Combine(_folder, "data.bin");
        var tokens = new int[5000];
        NativeParallel.Tensors.SeededRandom.Integers(9, tokens, 1000);
        TokenShard.Write(shard, tokens);
        string[] common = ["--data", shard, "--batch", "2", "--seq", "16", "--device", "cpu", "--warmup", "2", "--cosine"];
        var (code, straight) = Run(["train", .. common, "--steps", "6"]);
        Assert.True(code == 0, straight);

        string checkpoint = Path.Combine(_folder, "ckpt");
        (code, string firstHalf) = Run(["train", .. common, "--steps", "6", "--checkpoint", checkpoint, "--checkpoint-every", "3"]);
        Assert.True(code == 0, firstHalf);
        // The run wrote a checkpoint at step 3 and the final one at step 6; rewind to step 3 by resuming a copy made then.
        string early = Path.Combine(_folder, "early");
        (code, _) = Run(["train", .. common, "--steps", "3", "--checkpoint", early]);
        Assert.Equal(0, code);
        (code, string resumed) = Run(["train", "--data", shard, "--batch", "2", "--seq", "16", "--device", "cpu", "--warmup", "2", "--cosine", "--steps", "6", "--resume", early]);
        Assert.True(code == 0, resumed);
        Assert.Contains("resumed at step 3", resumed);
        // Same losses, bit for bit as printed, for steps 4..6.
        Assert.Equal(Losses(straight)[3..], Losses(resumed));
        Assert.Equal(Losses(straight), Losses(firstHalf));
    }

    [Fact]
    public void ACheckpointOfOneLayoutResumesInAnother()
    {
        // Saved by a tp=2 x pp=2 job (shards and stages merged into one folder), resumed as dp=2 with ZeRO-1 (the
        // moments cut again): the losses of steps 4..6 are those of one device running straight through.
        string shard = RandomShard();
        string[] common = ["--data", shard, "--batch", "4", "--seq", "16", "--device", "cpu"];
        var (code, straight) = Run(["train", .. common, "--steps", "6"]);
        Assert.True(code == 0, straight);
        string checkpoint = Path.Combine(_folder, "tp-pp");
        (code, string first) = Run(["train", .. common, "--steps", "3", "--strategy", "tp=2,pp=2,mb=2,1f1b", "--checkpoint", checkpoint]);
        Assert.True(code == 0, first);
        (code, string resumed) = Run(["train", "--data", shard, "--batch", "4", "--seq", "16", "--device", "cpu", "--steps", "6", "--resume", checkpoint,
            "--dp", "2", "--zero", "1"]);
        Assert.True(code == 0, resumed);
        Assert.Contains("resumed at step 3", resumed);
        AssertSameLosses(Losses(straight)[3..], Losses(resumed), "tp=2,pp=2 resumed as dp=2,zero=1");
    }

    [Fact]
    public void AFailureOnEveryThreadRankIsOneLineNamingItsCause()
    {
        string shard = RandomShard();
        string checkpoint = Path.Combine(_folder, "no-moments");
        Assert.Equal(0, Run("train", "--data", shard, "--steps", "1", "--batch", "2", "--seq", "16", "--device", "cpu", "--checkpoint", checkpoint).Code);
        File.Delete(Path.Combine(checkpoint, "training", "optimizer.safetensors"));
        var (code, output) = Run("train", "--data", shard, "--steps", "2", "--batch", "2", "--seq", "16", "--device", "cpu", "--resume", checkpoint, "--dp", "2");
        Assert.Equal(1, code);
        Assert.Contains("has no optimizer state", output);
        Assert.DoesNotContain("AggregateException", output);
    }

    [Fact]
    public void AMixtureOfExpertsTrainsWithExpertParallelismAndItsSavedModelRuns()
    {
        string shard = RandomShard();
        string saved = Path.Combine(_folder, "moe");
        string[] common = ["--data", shard, "--batch", "2", "--seq", "8", "--device", "cpu", "--steps", "2", "--experts", "4"];
        var (code, single) = Run(["train", .. common, "--save", saved]);
        Assert.True(code == 0, single);
        // Expert parallelism: each of two ranks trains two experts on both ranks' routings, and --save merges them.
        string savedEp = Path.Combine(_folder, "moe-ep");
        (code, string ep) = Run(["train", .. common, "--strategy", "ep=2", "--save", savedEp]);
        Assert.True(code == 0, ep);
        AssertSameLosses(Losses(single), Losses(ep), "a mixture of experts at ep=2");
        var one = NativeParallel.Models.HuggingFaceCheckpoint.Load(saved);
        var two = NativeParallel.Models.HuggingFaceCheckpoint.Load(savedEp);
        for (int e = 0; e < 4; e++)
        {
            double error = Kernels.Ops.FiniteDifference.RelativeError(Array.ConvertAll(two.Layers[1].Experts[e].Down, v => (double)v),
                Array.ConvertAll(one.Layers[1].Experts[e].Down, v => (double)v));
            Assert.True(error <= 1e-4, $"expert {e} saved at ep=2 differs from one device's by {error:E2}");
        }
        Assert.Contains("\"num_local_experts\": 4", File.ReadAllText(Path.Combine(saved, "config.json")));
        (code, string run) = Run("run", "--model", saved, "--device", "cpu", "--strategy", "ep=2", "--new-tokens", "2", "--prompt-tokens", "4");
        Assert.True(code == 0, run);

        (code, string refused) = Run(["train", .. common, "--tp", "2"]);
        Assert.Equal(2, code);
        Assert.Contains("does not split a mixture-of-experts model's experts", refused);
        (code, refused) = Run(["train", .. common[..^2], "--capacity", "1.5"]);
        Assert.Equal(2, code);
        Assert.Contains("needs --experts N", refused);
    }

    [Fact]
    public void AnExpertParallelCheckpointResumesAtEp2AndOnOneDevice()
    {
        // Capped experts (factor 1 drops routings here): the checkpoint must bring its capacity factor back, or the
        // resumed run routes differently. Saved at ep=2 after step 3; steps 4..6 resumed at ep=2 print the
        // uninterrupted run's losses as printed, and on one device the same losses to the layouts' tolerance.
        string shard = RandomShard();
        string[] common = ["--data", shard, "--batch", "2", "--seq", "8", "--device", "cpu"];
        var (code, straight) = Run(["train", .. common, "--steps", "6", "--experts", "4", "--capacity", "1", "--strategy", "ep=2"]);
        Assert.True(code == 0, straight);
        string checkpoint = Path.Combine(_folder, "moe-ep");
        (code, string first) = Run(["train", .. common, "--steps", "3", "--experts", "4", "--capacity", "1", "--strategy", "ep=2", "--checkpoint", checkpoint]);
        Assert.True(code == 0, first);
        Assert.Contains("\"capacity_factor\": 1", File.ReadAllText(TrainingCheckpoint.StatePath(checkpoint)));

        (code, string resumed) = Run(["train", .. common, "--steps", "6", "--resume", checkpoint, "--strategy", "ep=2"]);
        Assert.True(code == 0, resumed);
        Assert.Contains("resumed at step 3", resumed);
        Assert.Equal(Losses(straight)[3..], Losses(resumed));
        Assert.Contains("in each of 4 experts (top-2, capacity factor 1)", resumed);

        (code, string single) = Run(["train", .. common, "--steps", "6", "--resume", checkpoint]);
        Assert.True(code == 0, single);
        Assert.Contains("capacity factor 1", single);
        AssertSameLosses(Losses(straight)[3..], Losses(single), "saved at ep=2, resumed on one device");

        // A capacity factor on a dense model's checkpoint is the state file's error, named.
        string dense = Path.Combine(_folder, "dense");
        Assert.Equal(0, Run(["train", .. common, "--steps", "1", "--checkpoint", dense]).Code);
        string state = TrainingCheckpoint.StatePath(dense);
        File.WriteAllText(state, File.ReadAllText(state).Replace("\"step\": 1", "\"step\": 1, \"capacity_factor\": 2"));
        (code, string refused) = Run(["train", .. common, "--steps", "2", "--resume", dense]);
        Assert.Equal(1, code);
        Assert.Contains("field 'capacity_factor' is 2", refused);
    }

    private string RandomShard(int count = 5000)
    {
        string shard = Path.Combine(_folder, $"random_{count}.bin");
        var tokens = new int[count];
        NativeParallel.Tensors.SeededRandom.Integers(9, tokens, 1000);
        TokenShard.Write(shard, tokens);
        return shard;
    }

    private static void AssertSameLosses(double[] expected, double[] got, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - got[i]) <= 2e-4, $"{what}, step {i + 1}: loss {got[i]} vs one device {expected[i]}");
    }

    [Fact]
    public void DataParallelThreadRanksPrintTheLossesOfOneDevice()
    {
        string shard = RandomShard();
        string[] common = ["train", "--data", shard, "--batch", "4", "--seq", "16", "--steps", "4", "--device", "cpu"];
        var (code, single) = Run(common);
        Assert.True(code == 0, single);
        (code, string dp) = Run([.. common, "--dp", "2", "--bucket-mb", "0.05"]);
        Assert.True(code == 0, dp);
        Assert.Contains("dp=2 (gradients all-reduced in 0.05 MiB buckets during backward): 2 ranks as threads", dp);
        Assert.Contains("2 rows per replica", dp);
        AssertSameLosses(Losses(single), Losses(dp), "dp=2");
        (code, string zero) = Run([.. common, "--dp", "2", "--zero", "1"]);
        Assert.True(code == 0, zero);
        Assert.Contains("(1/2: ZeRO-1)", zero);
        AssertSameLosses(Losses(single), Losses(zero), "dp=2 with ZeRO-1");
        Assert.Equal(2, Run([.. common, "--dp", "3"]).Code);
        Assert.Equal(2, Run([.. common, "--zero", "1"]).Code);
        Assert.Equal(2, Run([.. common, "--dp", "2", "--zero", "2"]).Code);
    }

    [Fact]
    public void TensorParallelThreadRanksPrintTheLossesOfOneDevice()
    {
        string shard = RandomShard();
        string[] common = ["train", "--data", shard, "--batch", "2", "--seq", "16", "--steps", "3", "--device", "cpu"];
        var (code, single) = Run(common);
        Assert.True(code == 0, single);
        (code, string tp) = Run([.. common, "--tp", "2"]);
        Assert.True(code == 0, tp);
        Assert.Contains("tp=2 (Megatron column/row-parallel layers): 2 ranks as threads", tp);
        AssertSameLosses(Losses(single), Losses(tp), "tp=2");
        (code, string sp) = Run([.. common, "--tp", "2", "--sp"]);
        Assert.True(code == 0, sp);
        Assert.Contains("sequence-parallel: norms and residual on 1/tp of the tokens", sp);
        AssertSameLosses(Losses(single), Losses(sp), "tp=2 with sequence parallelism");
        Assert.Equal(2, Run([.. common, "--sp"]).Code);                      // sp needs tp
        Assert.Equal(2, Run([.. common, "--tp", "3"]).Code);                 // 8 heads do not split 3 ways
        // Composed with data parallelism, and saved as one folder with the shards merged: the model of one device.
        string saved = Path.Combine(_folder, "tp-dp"), savedSingle = Path.Combine(_folder, "single");
        (code, string tpdp) = Run([.. common, "--tp", "2", "--dp", "2", "--save", saved]);
        Assert.True(code == 0, tpdp);
        AssertSameLosses(Losses(single), Losses(tpdp), "tp=2 x dp=2");
        Assert.Contains("every rank's part merged", tpdp);
        Assert.Equal(0, Run([.. common, "--save", savedSingle]).Code);
        var (a, b) = (global::NativeParallel.Models.HuggingFaceCheckpoint.Load(saved), global::NativeParallel.Models.HuggingFaceCheckpoint.Load(savedSingle));
        double Error(float[] x, float[] y) => Kernels.Ops.FiniteDifference.RelativeError(Array.ConvertAll(x, v => (double)v), Array.ConvertAll(y, v => (double)v));
        for (int l = 0; l < a.Layers.Length; l++)
            Assert.True(Error(a.Layers[l].O, b.Layers[l].O) <= 1e-5 && Error(a.Layers[l].Gate, b.Layers[l].Gate) <= 1e-5, $"layer {l}: the merged tp=2 weights differ from one device's");
        Assert.True(Error(a.LmHead, b.LmHead) <= 1e-5, "lm_head differs from one device's");
    }

    [Fact]
    public void PipelineStagesPrintTheLossesOfOneDevice()
    {
        string shard = RandomShard();
        string val = RandomShard(3000);
        string[] common = ["train", "--data", shard, "--val-data", val, "--val-every", "3", "--batch", "4", "--seq", "16", "--steps", "3", "--device", "cpu"];
        var (code, single) = Run(common);
        Assert.True(code == 0, single);
        (code, string pp) = Run([.. common, "--pp", "2", "--micro-batches", "4"]);
        Assert.True(code == 0, pp);
        Assert.Contains("pp=2 (1f1b over 4 micro-batches of 1 rows, bubble 20 %)", pp);
        AssertSameLosses(Losses(single), Losses(pp), "pp=2");
        (code, string gpipe) = Run([.. common, "--pp", "2", "--micro-batches", "4", "--schedule", "gpipe"]);
        Assert.True(code == 0, gpipe);
        Assert.Contains("pp=2 (gpipe over 4 micro-batches", gpipe);
        AssertSameLosses(Losses(single), Losses(gpipe), "pp=2 gpipe");
        (code, string tpp) = Run([.. common, "--strategy", "tp=2,pp=2,mb=2,1f1b"]);
        Assert.True(code == 0, tpp);
        AssertSameLosses(Losses(single), Losses(tpp), "tp=2 x pp=2");
        double ValLoss(string output) => double.Parse(output.Split("val loss ")[1].Split('\n')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Math.Abs(ValLoss(single) - ValLoss(pp)) <= 2e-4, $"validation: {ValLoss(pp)} vs one device {ValLoss(single)}");
        Assert.Equal(2, Run([.. common, "--pp", "3"]).Code);                          // 2 layers cannot fill 3 stages
        Assert.Equal(2, Run([.. common, "--pp", "2", "--micro-batches", "3"]).Code);  // 4 rows do not split in 3
        Assert.Equal(2, Run([.. common, "--pp", "2", "--schedule", "zigzag"]).Code);
        Assert.Equal(2, Run([.. common, "--strategy", "pp=2", "--pp", "2"]).Code);     // the layout given twice
    }

    [Fact]
    public void TheTrainingTablePrintsEveryLayoutBesideItsFormulaAndChecksIt()
    {
        string shard = RandomShard();
        string json = Path.Combine(_folder, "table.json");
        var (code, output) = Run("train", "--data", shard, "--strategy", "all", "--steps", "2", "--batch", "4", "--seq", "16", "--device", "cpu", "--json", json);
        Assert.True(code == 0, output);
        foreach (string layout in TrainingLayouts.All.Prepend("single"))
            Assert.Matches($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(layout)} .* ok \(loss rel err", output);
        Assert.DoesNotContain("FAIL", output);
        // Measured bytes against the formulas: within 10% for the large collectives (headers and checks add a little).
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        foreach (var row in report.RootElement.GetProperty("layouts").EnumerateArray())
        {
            double sent = row.GetProperty("sent_per_rank_per_step").GetDouble(), predicted = row.GetProperty("predicted_per_rank_per_step").GetDouble();
            string name = row.GetProperty("name").GetString()!;
            if (name is "dp=2" or "dp=2,zero=1")
                Assert.True(Math.Abs(sent - predicted) <= 0.1 * predicted, $"{name}: sent {sent} bytes per rank and step, the formula says {predicted}");
        }
        Assert.DoesNotContain("skipped", output); // a dense model fits every default layout at this batch
        Assert.Equal(2, Run("train", "--data", shard, "--strategy", "dp=2;dp=2,ep=2").Code);
        Assert.Equal(2, Run("train", "--data", shard, "--strategy", "zp=2").Code);
    }

    [Fact]
    public void TheTrainingTableOfAMixtureOfExpertsHasItsEpRowsAndSaysWhatItLeftOut()
    {
        string shard = RandomShard();
        string json = Path.Combine(_folder, "moe-table.json");
        string[] moe = ["train", "--data", shard, "--steps", "2", "--batch", "4", "--seq", "8", "--device", "cpu", "--experts", "4"];
        var (code, output) = Run([.. moe, "--strategy", "all", "--json", json]);
        Assert.True(code == 0, output);
        Assert.DoesNotContain("FAIL", output);
        foreach (string layout in TrainingLayouts.ExpertParallel)
            Assert.Matches($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(layout)} .* ok \(loss rel err", output);
        // Tensor parallelism does not split experts: each tp row is left out with the reason a lone --strategy gets.
        foreach (string layout in TrainingLayouts.All.Where(l => TrainingLayout.Parse(l).Tp > 1))
            Assert.Contains($"skipped {layout}: tensor parallelism does not split a mixture-of-experts model's experts", output);

        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        var rows = report.RootElement.GetProperty("layouts").EnumerateArray().ToDictionary(r => r.GetProperty("name").GetString()!);
        Assert.Equal(5, report.RootElement.GetProperty("skipped").GetArrayLength());
        var single = rows["single"].GetProperty("losses").EnumerateArray().Select(l => l.GetDouble()).ToArray();
        foreach (string layout in TrainingLayouts.ExpertParallel)
        {
            var row = rows[layout];
            // The table's own verdict, and the losses held to one device's here too (the table's f32 tolerance).
            Assert.True(row.GetProperty("replicas_identical").GetBoolean(), $"{layout}: the weights the ranks share differ");
            var losses = row.GetProperty("losses").EnumerateArray().Select(l => l.GetDouble()).ToArray();
            Assert.Equal(single.Length, losses.Length);
            for (int s = 0; s < single.Length; s++)
                Assert.True(Math.Abs(losses[s] - single[s]) <= 1e-4 * single[s], $"{layout} step {s + 1}: loss {losses[s]} vs one device {single[s]}");
            double sent = row.GetProperty("sent_per_rank_per_step").GetDouble(), predicted = row.GetProperty("predicted_per_rank_per_step").GetDouble();
            Assert.True(Math.Abs(sent - predicted) <= 0.1 * predicted, $"{layout}: sent {sent} bytes per rank and step, the formula says {predicted}");
        }

        // With a capacity cap, replicas and micro-batches cap their own routings: such a layout is refused by name
        // (and left out of "all"); ep alone caps every rank's routings together and stays.
        (code, output) = Run([.. moe, "--capacity", "1", "--strategy", "ep=2;ep=2,mb=2"]);
        Assert.Equal(2, code);
        Assert.Contains("ep=2,mb=2: with --capacity 1 each micro-batch caps its own routings", output);
        (code, output) = Run([.. moe[..^2], "--experts", "6", "--strategy", "ep=4"]);
        Assert.Equal(2, code);
        Assert.Contains("ep=4 must divide the 6 experts", output);
    }

    [Theory]
    [InlineData(2, "shm", new string[0], "dp=2 (gradients all-reduced in 25 MiB buckets during backward): 2 ranks as processes over shm")]
    [InlineData(4, "tcp", new[] { "--strategy", "dp=2,pp=2,mb=2,1f1b" }, "pp=2 (1f1b over 2 micro-batches of 1 rows, bubble 33 %): 4 ranks as processes over tcp")]
    [InlineData(4, "shm", new[] { "--tp", "2", "--pp", "2", "--micro-batches", "4", "--schedule", "gpipe" }, "tp=2 (Megatron column/row-parallel layers), pp=2 (gpipe")]
    public void ProcessesOfALaunchedJobPrintTheLossesOfOneDevice(int processes, string transport, string[] layout, string header)
    {
        string shard = RandomShard();
        string[] train = ["train", "--data", shard, "--batch", "4", "--seq", "16", "--steps", "4", "--device", "cpu"];
        var (code, single) = Run(train);
        Assert.True(code == 0, single);
        string cli = Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.Environment["NATIVEPARALLEL_TRANSPORT"] = transport;
        foreach (string a in new[] { cli, "launch", "-n", processes.ToString(), "--", "dotnet", cli }.Concat(train).Concat(layout)) info.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "the launched training did not finish in 3 minutes");
        output += error.Result;
        Assert.True(process.ExitCode == 0, output);
        Assert.Contains(header, output);
        var launched = output.Split('\n').Where(l => l.StartsWith("[rank 0] step ", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split("| loss ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        AssertSameLosses(Losses(single), launched, $"{string.Join(' ', layout)} over {processes} processes and {transport}");
        Assert.DoesNotContain("[rank 1] step", output);
    }

    [Fact]
    public void BadTrainingCommandLinesSayWhatIsWrong()
    {
        Assert.Equal(2, Run("train").Code);
        Assert.Contains("needs --data", Run("train").Output);
        string shard = Path.Combine(_folder, "small.bin");
        TokenShard.Write(shard, new int[20]);
        Assert.Equal(2, Run("train", "--data", shard, "--steps", "0").Code);
        Assert.Equal(2, Run("train", "--data", shard, "--lr", "fast").Code);
        Assert.Equal(2, Run("train", "--data", shard, "--dtype", "f16").Code);
        var (code, output) = Run("train", "--data", shard, "--batch", "4", "--seq", "16");
        Assert.Equal(1, code);
        Assert.Contains("cannot fill one batch", output);
        (code, output) = Run("train", "--data", Path.Combine(_folder, "missing.bin"));
        Assert.Equal(1, code);
        Assert.Contains("missing.bin", output);
    }
}
