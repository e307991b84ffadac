using System.Globalization;
using NativeParallel.Benchmarks;
using ScottPlot;

namespace NativeParallel.Cli.Plots;

/// <summary>
/// <c>bench kernels --plot FILE</c>: each kernel's achieved figure as a share of its device limit (the measured copy
/// bandwidth for memory-bound kernels, cuBLAS for matmuls), one horizontal bar per kernel labelled with both figures;
/// a kernel with no limit measured on this device gets an empty bar that says so.
/// </summary>
internal static class KernelsPlot
{
    public static void Save(string path, string device, IReadOnlyList<KernelBenchmarkResult> results)
    {
        using var plot = new Plot();
        var names = new List<string>();
        var bars = new List<Bar>();
        // The first kernel on top.
        for (int i = 0; i < results.Count; i++)
        {
            var r = results[i];
            double position = results.Count - 1 - i;
            names.Insert(0, $"{r.Name} ({r.Shape})");
            string label = r.Ratio is { } ratio
                ? string.Create(CultureInfo.InvariantCulture, $"{ratio:P0}: {r.Achieved:G3} of {r.BaselineValue:G3} {r.Unit}")
                : string.Create(CultureInfo.InvariantCulture, $"{r.Achieved:G3} {r.Unit}, no limit measured ({r.Baseline})");
            bars.Add(new Bar { Position = position, Value = (r.Ratio ?? 0) * 100, Label = label, CenterLabel = false, Orientation = Orientation.Horizontal });
        }
        var series = plot.Add.Bars(bars);
        series.Horizontal = true;
        plot.Add.VerticalLine(100, 1, Colors.Gray, LinePattern.Dashed);
        plot.Axes.Left.TickGenerator = Ticks.Names(names);
        plot.Axes.Left.MajorTickStyle.Length = 0;
        plot.Grid.YAxisStyle.IsVisible = false;
        plot.Axes.SetLimitsX(0, Math.Max(130, bars.Select(b => b.Value).DefaultIfEmpty(0).Max() * 1.3));
        plot.Title($"bench kernels on {device}: achieved as a share of the device limit");
        plot.XLabel("% of the device limit (copy bandwidth or cuBLAS)");
        PlotFile.Save(plot, path, 1200, Math.Max(400, 120 + 32 * results.Count));
    }
}
