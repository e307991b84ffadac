using ScottPlot;

namespace NativeParallel.Cli.Plots;

/// <summary>One loss curve: a layout's training loss at steps 1..n, and its validation losses where measured.</summary>
internal sealed record LossCurve(string Name, IReadOnlyList<(int Step, double Loss)> Training, IReadOnlyList<(int Step, double Loss)> Validation);

/// <summary>
/// <c>train --plot FILE</c>: the loss curves of every layout trained (one for a single run, every row of
/// <c>--strategy all</c>) on one chart against the step, validation losses as markers in the curve's colour.
/// Layouts that train the same model give the same curve, so overlapping lines are the expected picture.
/// </summary>
internal static class TrainingLossPlot
{
    public static void Save(string path, string title, IReadOnlyList<LossCurve> curves)
    {
        using var plot = new Plot();
        for (int i = 0; i < curves.Count; i++)
        {
            var curve = curves[i];
            var color = plot.Add.Palette.GetColor(i);
            if (curve.Training.Count > 0)
            {
                var line = plot.Add.Scatter(curve.Training.Select(p => (double)p.Step).ToArray(), curve.Training.Select(p => p.Loss).ToArray(), color);
                line.LegendText = curve.Name;
                // Many layouts overlap exactly: thinner later lines keep the earlier ones visible beneath.
                line.LineWidth = curves.Count > 1 ? 4f - 3f * i / (curves.Count - 1) : 2f;
                line.MarkerSize = curve.Training.Count > 60 ? 0 : 4;
            }
            if (curve.Validation.Count > 0)
            {
                var marks = plot.Add.ScatterPoints(curve.Validation.Select(p => (double)p.Step).ToArray(), curve.Validation.Select(p => p.Loss).ToArray(), color);
                marks.LegendText = $"{curve.Name} (validation)";
                marks.MarkerSize = 9;
                marks.MarkerShape = MarkerShape.OpenDiamond;
            }
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss (mean cross-entropy)");
        plot.ShowLegend(Alignment.UpperRight);
        PlotFile.Save(plot, path, 1000, 600);
    }
}
