using System.Globalization;
using ScottPlot;

namespace NativeParallel.Cli.Plots;

/// <summary>Axis ticks the plots share: byte sizes on a log2 axis, and category names on a bar chart's axis.</summary>
internal static class Ticks
{
    /// <summary>Major ticks at powers of two across [log2 min, log2 max] (every 2nd or 4th when there are many), labelled 8 B, 1 KiB, 64 MiB.</summary>
    public static ScottPlot.TickGenerators.NumericManual Log2Bytes(double log2Min, double log2Max)
    {
        int first = (int)Math.Floor(log2Min), last = (int)Math.Ceiling(log2Max);
        int step = (last - first) switch { > 24 => 4, > 12 => 2, _ => 1 };
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int p = first; p <= last; p++)
            if ((p - first) % step == 0) ticks.AddMajor(p, Bytes(p));
            else ticks.AddMinor(p);
        return ticks;
    }

    /// <summary>Category names at 0, 1, 2, ...</summary>
    public static ScottPlot.TickGenerators.NumericManual Names(IReadOnlyList<string> names)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < names.Count; i++) ticks.AddMajor(i, names[i]);
        return ticks;
    }

    private static string Bytes(int log2)
    {
        if (log2 < 0) return "";
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int unit = Math.Min(log2 / 10, units.Length - 1);
        return string.Create(CultureInfo.InvariantCulture, $"{1L << (log2 - 10 * unit)} {units[unit]}");
    }
}
