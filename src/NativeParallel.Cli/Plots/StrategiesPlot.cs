using ScottPlot;

namespace NativeParallel.Cli.Plots;

/// <summary>One row of run's strategy table, as the plot reads it.</summary>
internal sealed record StrategyPoint(string Name, long WeightBytesPerRank, long KvBytesPerRank, double BytesSentPerToken, double PredictedBytesPerToken,
    double PrefillMs, double DecodeMsPerToken, double TokensPerSecond);

/// <summary>
/// <c>run --plot FILE</c>: the seed's four axes for every strategy of the table, one panel each: memory per rank
/// (weights and KV cache, stacked), communication per token (measured beside the formula), latency (prefill and
/// decode per token) and throughput. Strategies are rows, read top to bottom in the table's order.
/// </summary>
internal static class StrategiesPlot
{
    public static void Save(string path, string title, IReadOnlyList<StrategyPoint> points)
    {
        var multiplot = new Multiplot();
        multiplot.AddPlots(4);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(2, 2);
        var names = points.Select(p => p.Name).Reverse().ToArray();
        double Row(int i) => points.Count - 1 - i;
        const double MiB = 1048576.0;

        Panel(multiplot.GetPlot(0), $"{title}: memory per rank", "MiB", names,
            ("weights", points.Select(p => p.WeightBytesPerRank / MiB).ToArray(), null),
            ("KV cache", points.Select(p => p.KvBytesPerRank / MiB).ToArray(), points.Select(p => p.WeightBytesPerRank / MiB).ToArray()));
        Panel(multiplot.GetPlot(1), "communication per token", "bytes sent per token per rank", names,
            ("measured", points.Select(p => p.BytesSentPerToken).ToArray(), null),
            ("predicted (ring formulas)", points.Select(p => p.PredictedBytesPerToken).ToArray(), null));
        Panel(multiplot.GetPlot(2), "latency", "ms", names,
            ("prefill", points.Select(p => p.PrefillMs).ToArray(), null),
            ("decode per token", points.Select(p => p.DecodeMsPerToken).ToArray(), null));
        Panel(multiplot.GetPlot(3), "throughput", "tokens/s", names,
            ("tokens/s", points.Select(p => p.TokensPerSecond).ToArray(), null));
        PlotFile.Save(multiplot, path, 1400, Math.Max(700, 200 + 50 * points.Count));

        // Each series is (label, values, base): with a base the bars stack on it, else series sit side by side in a row.
        void Panel(Plot plot, string panelTitle, string unit, string[] rowNames, params (string Label, double[] Values, double[]? Base)[] series)
        {
            int sideBySide = series.Count(s => s.Base is null);
            double width = 0.8 / sideBySide;
            int slot = 0;
            foreach (var (label, values, stackOn) in series)
            {
                // The first series on top within a strategy's row; a stacked series sits on the bar it stacks on.
                double offset = -((stackOn is null ? slot++ : slot - 1) - (sideBySide - 1) / 2.0) * width;
                var bars = values.Select((v, i) => new Bar
                {
                    Position = Row(i) + offset, Value = (stackOn?[i] ?? 0) + v, ValueBase = stackOn?[i] ?? 0, Size = width * 0.95, Orientation = Orientation.Horizontal,
                }).ToList();
                var color = plot.Add.Palette.GetColor(plot.GetPlottables().Count());
                var plotted = plot.Add.Bars(bars);
                plotted.Horizontal = true;
                if (series.Length > 1) plotted.LegendText = label;
                plotted.Color = color;
            }
            plot.Axes.Left.TickGenerator = Ticks.Names(rowNames);
            plot.Axes.Left.MajorTickStyle.Length = 0;
            plot.Grid.YAxisStyle.IsVisible = false;
            plot.Axes.Margins(left: 0, right: 0.1);
            plot.Title(panelTitle);
            plot.XLabel(unit);
            // Below the panel: inside it the legend would cover the longest bars.
            if (series.Length > 1) plot.ShowLegend(Edge.Bottom);
        }
    }
}
