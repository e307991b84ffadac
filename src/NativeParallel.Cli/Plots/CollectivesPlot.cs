using NativeParallel.Comm;
using ScottPlot;

namespace NativeParallel.Cli.Plots;

/// <summary>
/// <c>bench collectives --plot FILE</c>: bus bandwidth against message size, sizes on a log2 axis, out-of-place and
/// in-place, with a baseline's curve when one is given. Size 0 has no place on a log axis and is left out.
/// </summary>
internal static class CollectivesPlot
{
    public static void Save(string path, string title, IReadOnlyList<CollectiveBenchmarkRow> rows, CollectiveBaseline? baseline)
    {
        using var plot = new Plot();
        var sized = rows.Where(r => r.Bytes > 0).ToList();
        var xs = new List<double>();
        void Curve(string label, double[] x, double[] y)
        {
            if (x.Length == 0) return;
            var line = plot.Add.Scatter(x, y);
            line.LegendText = label;
            xs.AddRange(x);
        }
        Curve("out-of-place", sized.Select(r => Math.Log2(r.Bytes)).ToArray(), sized.Select(r => r.OutOfPlaceBusBw).ToArray());
        var inPlace = sized.Where(r => r.InPlaceBusBw is not null).ToList();
        Curve("in-place", inPlace.Select(r => Math.Log2(r.Bytes)).ToArray(), inPlace.Select(r => r.InPlaceBusBw!.Value).ToArray());
        if (baseline is not null)
        {
            var points = baseline.Points.Where(p => p.Bytes > 0).OrderBy(p => p.Bytes).ToList();
            Curve($"baseline: {baseline.Label}", points.Select(p => Math.Log2(p.Bytes)).ToArray(), points.Select(p => p.BusBw).ToArray());
        }
        if (xs.Count > 0) plot.Axes.Bottom.TickGenerator = Ticks.Log2Bytes(xs.Min(), xs.Max());
        plot.Title(title);
        plot.XLabel("message size (log scale)");
        plot.YLabel("bus bandwidth (GB/s)");
        plot.ShowLegend(Alignment.UpperLeft);
        PlotFile.Save(plot, path, 1000, 600);
    }
}
