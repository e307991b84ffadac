using System.Buffers.Binary;
using System.Xml.Linq;
using NativeParallel.Benchmarks;
using NativeParallel.Cli.Plots;
using NativeParallel.Comm;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// Each --plot kind renders a real image: PNG (its signature, and the IHDR's width and height equal to what was asked
/// for) or SVG (XML with an svg root), chosen by the extension; the baseline file's two formats and their errors; and
/// the commands' options, checked before any work.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class PlotTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-plot-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static readonly CollectiveBenchmarkRow[] Rows = [.. new long[] { 0, 8, 1024, 65536, 1 << 20, 16 << 20 }.Select(bytes =>
        new CollectiveBenchmarkRow(bytes, bytes / 4, "float", "sum", -1, 10, bytes / 1e4, bytes / 8e3, 0, 9, bytes / 9e3, bytes / 7e3, 0))];

    [Theory]
    [InlineData("png")]
    [InlineData("svg")]
    public void EveryPlotKindRendersAnImage(string extension)
    {
        string collectives = Path.Combine(_folder, $"collectives.{extension}");
        CollectivesPlot.Save(collectives, "all_reduce, 2 ranks", Rows, new CollectiveBaseline("mpi", [(8, 0.001), (1 << 20, 3.0), (16 << 20, 5.0)]));
        AssertImage(collectives, 1000, 600);

        string kernels = Path.Combine(_folder, $"kernels.{extension}");
        KernelsPlot.Save(kernels, "cuda:0", [
            new KernelBenchmarkResult("device copy (D2D)", "256 MiB", 1.0, 3000, "GB/s", "itself", 3000, ""),
            new KernelBenchmarkResult("softmax f32", "256 x 32000", 0.1, 2100, "GB/s", "device copy", 3000, ""),
            new KernelBenchmarkResult("matmul f32", "512^3", 2, 20, "TFLOP/s", "none yet", null, ""),
        ]);
        AssertImage(kernels, 1200, 400);

        string run = Path.Combine(_folder, $"run.{extension}");
        StrategiesPlot.Save(run, "run on cpu", [
            new StrategyPoint("single", 7 << 20, 1 << 17, 0, 0, 17, 0.3, 1200),
            new StrategyPoint("tp=2", 3 << 20, 1 << 16, 14408, 14240, 9, 0.6, 1100),
            new StrategyPoint("ep=2 (moe)", 7 << 20, 1 << 16, 4205, 4104, 26, 0.5, 900),
        ]);
        AssertImage(run, 1400, 700);

        string train = Path.Combine(_folder, $"train.{extension}");
        TrainingLossPlot.Save(train, "train", [
            new LossCurve("single", [(1, 7.0), (2, 6.5), (3, 6.1)], [(3, 6.3)]),
            new LossCurve("dp=2", [(1, 7.0), (2, 6.5), (3, 6.1)], []),
        ]);
        AssertImage(train, 1000, 600);
    }

    [Fact]
    public void BenchCollectivesDrawsItsSweepBesideABaseline()
    {
        string csv = Path.Combine(_folder, "openmpi.csv");
        File.WriteAllText(csv, "# awk '!/^#/{print $1\",\"$7}' of an MPI table\nbytes,busbw\n1024,0.5\n65536,2.25\n\n4194304,4.0\n");
        var baseline = CollectiveBaseline.Read(csv);
        Assert.Equal("openmpi", baseline.Label);
        Assert.Equal([(1024L, 0.5), (65536L, 2.25), (4194304L, 4.0)], baseline.Points);

        string plot = Path.Combine(_folder, "sweep.png"), json = Path.Combine(_folder, "sweep.json");
        var (code, output) = InProcessCli.Run("bench", "collectives", "--ranks", "2", "--transport", "threads", "-b", "1K", "-e", "64K", "-f", "8",
            "-n", "1", "-w", "0", "--plot", plot, "--baseline", csv, "--json", json);
        Assert.True(code == 0, output);
        Assert.Contains($"wrote {plot}", output);
        AssertImage(plot, 1000, 600);

        // Our own --json report is a baseline too: its rows' bytes and out-of-place busbw.
        var own = CollectiveBaseline.Read(json);
        Assert.Equal([1024L, 8192L, 65536L], own.Points.Select(p => p.Bytes));
        Assert.All(own.Points, p => Assert.True(p.BusBw >= 0));
    }

    [Fact]
    public void ABadBaselineOrPlotPathIsOneLineBeforeAnyWork()
    {
        string bad = Path.Combine(_folder, "bad.csv");
        File.WriteAllText(bad, "bytes,busbw\n1024,0.5\n2048;0.7\n");
        var e = Assert.Throws<InvalidDataException>(() => CollectiveBaseline.Read(bad));
        Assert.Equal($"{bad}:3: expected bytes,busbw (an integer and GB/s, e.g. 1048576,12.5), got '2048;0.7'", e.Message);
        string noRows = Path.Combine(_folder, "info.json");
        File.WriteAllText(noRows, "{\"command\": \"info\"}");
        Assert.Contains("no \"rows\" array", Assert.Throws<InvalidDataException>(() => CollectiveBaseline.Read(noRows)).Message);

        string[] sweep = ["bench", "collectives", "--ranks", "2", "--transport", "threads", "-b", "8", "-e", "8", "-n", "1", "-w", "0"];
        var (code, output) = InProcessCli.Run([.. sweep, "--plot", Path.Combine(_folder, "x.png"), "--baseline", bad]);
        Assert.Equal(1, code);
        Assert.Equal($"nativeparallel: InvalidDataException: {bad}:3: expected bytes,busbw (an integer and GB/s, e.g. 1048576,12.5), got '2048;0.7'", output.Trim());
        (code, output) = InProcessCli.Run([.. sweep, "--plot", Path.Combine(_folder, "x.pdf")]);
        Assert.Equal(2, code);
        Assert.Contains("must end in .png or .svg", output);
        Assert.Equal(2, InProcessCli.Run([.. sweep, "--baseline", bad]).Code);                                       // a baseline needs a plot
        Assert.Equal(2, InProcessCli.Run([.. sweep, "--plot", Path.Combine(_folder, "missing", "x.png")]).Code);     // no such folder
        Assert.Equal(2, InProcessCli.Run("bench", "collectives", "--soak", "5", "--plot", Path.Combine(_folder, "s.png")).Code);
        Assert.Equal(2, InProcessCli.Run("run", "--prompt-ids", "1,2,3", "--plot", Path.Combine(_folder, "r.png")).Code); // no table to draw
        Assert.Empty(Directory.GetFiles(_folder, "*.png"));
    }

    [Fact]
    public void RunAndTrainDrawTheirTables()
    {
        string run = Path.Combine(_folder, "run.svg");
        var (code, output) = InProcessCli.Run("run", "--device", "cpu", "--strategy", "dp=2", "--new-tokens", "4", "--plot", run, "--quiet");
        Assert.True(code == 0, output);
        AssertImage(run, 1400, 700);
        // The strategy's name is on the chart, as text.
        Assert.Contains(XDocument.Load(run).Descendants().Where(e => e.Name.LocalName == "text"), t => t.Value.Trim() == "dp=2");

        string shard = Path.Combine(_folder, "tokens.bin");
        var tokens = new int[3000];
        NativeParallel.Tensors.SeededRandom.Integers(5, tokens, 1000);
        NativeParallel.Training.TokenShard.Write(shard, tokens);
        string train = Path.Combine(_folder, "train.png");
        (code, output) = InProcessCli.Run("train", "--data", shard, "--strategy", "dp=2;tp=2", "--steps", "2", "--batch", "2", "--seq", "8", "--device", "cpu",
            "--plot", train, "--quiet");
        Assert.True(code == 0, output);
        AssertImage(train, 1000, 600);
    }

    /// <summary>The file is a PNG of exactly this size, or an SVG document, and not a stub.</summary>
    private static void AssertImage(string path, int width, int height)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        byte[] bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 5000, $"{path}: only {bytes.Length} bytes");
        if (path.EndsWith(".png", StringComparison.Ordinal))
        {
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
            Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
            Assert.Equal(width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
            Assert.Equal(height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
            // Decodes as an image, not just a header.
            using var decoded = SkiaSharp.SKBitmap.Decode(path);
            Assert.NotNull(decoded);
            Assert.Equal(width, decoded.Width);
        }
        else
        {
            var svg = XDocument.Load(path).Root!;
            Assert.Equal("svg", svg.Name.LocalName);
            Assert.Equal(width, (int)double.Parse(((string?)svg.Attribute("width"))!.TrimEnd('p', 'x'), System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
