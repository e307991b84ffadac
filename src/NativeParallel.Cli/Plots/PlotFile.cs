using ScottPlot;
using SkiaSharp;

namespace NativeParallel.Cli.Plots;

/// <summary>
/// Where a --plot goes and how it is written: PNG or SVG by the file's extension. The path is checked before the
/// command does any work, so a typo costs nothing.
/// </summary>
internal static class PlotFile
{
    /// <summary>Checks <paramref name="path"/> (null: no plot asked for) and returns it; a usage error names what is wrong.</summary>
    public static string? Check(string? path, string option = "--plot")
    {
        if (path is null) return null;
        if (!IsSvg(path) && !IsPng(path)) throw new UsageException($"{option} {path}: the file name must end in .png or .svg (the extension picks the format)");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder)) throw new UsageException($"{option} {path}: folder {folder} does not exist");
        return path;
    }

    /// <summary>Writes one chart.</summary>
    public static void Save(Plot plot, string path, int width, int height)
    {
        if (IsSvg(path)) plot.SaveSvg(path, width, height);
        else plot.SavePng(path, width, height);
        Console.WriteLine($"wrote {path}");
    }

    /// <summary>Writes charts laid out together (ScottPlot's multiplot saves PNG only; SVG goes through Skia's SVG canvas).</summary>
    public static void Save(Multiplot multiplot, string path, int width, int height)
    {
        if (IsSvg(path))
        {
            using (var stream = File.Create(path))
            using (var canvas = SKSvgCanvas.Create(new SKRect(0, 0, width, height), stream))
                multiplot.Render(canvas, new PixelRect(0, width, height, 0));
        }
        else multiplot.SavePng(path, width, height);
        Console.WriteLine($"wrote {path}");
    }

    private static bool IsSvg(string path) => path.EndsWith(".svg", StringComparison.OrdinalIgnoreCase);

    private static bool IsPng(string path) => path.EndsWith(".png", StringComparison.OrdinalIgnoreCase);
}
