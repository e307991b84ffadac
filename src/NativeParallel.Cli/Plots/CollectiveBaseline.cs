using System.Globalization;
using System.Text.Json;

namespace NativeParallel.Cli.Plots;

/// <summary>
/// The numbers a collectives plot is drawn against (--baseline FILE): another run's bus bandwidth by message size.
/// Two formats: our own <c>bench collectives --json</c> report (its rows' <c>bytes</c> and
/// <c>out_of_place_bus_bw</c>), or a CSV of <c>bytes,busbw</c> lines (GB/s; an optional header line, <c>#</c>
/// comments and blank lines allowed), which any other tool's table turns into with one awk line. The legend shows
/// the file's name.
/// </summary>
internal sealed record CollectiveBaseline(string Label, IReadOnlyList<(long Bytes, double BusBw)> Points)
{
    /// <summary>Reads <paramref name="path"/>; a malformed file is an <see cref="InvalidDataException"/> naming the file and line.</summary>
    public static CollectiveBaseline Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--baseline {path}: no such file");
        string text = File.ReadAllText(path);
        var points = text.TrimStart().StartsWith('{') ? FromReport(path, text) : FromCsv(path, text);
        if (points.Count == 0) throw new InvalidDataException($"{path}: no bytes,busbw points (expected our bench collectives --json report or CSV lines such as 1048576,12.5)");
        return new CollectiveBaseline(Path.GetFileNameWithoutExtension(path), points);
    }

    private static List<(long, double)> FromReport(string path, string text)
    {
        using var document = JsonDocument.Parse(text);
        if (!document.RootElement.TryGetProperty("rows", out var rows) || rows.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: a JSON baseline is a bench collectives --json report; it has no \"rows\" array");
        var points = new List<(long, double)>();
        int index = 0;
        foreach (var row in rows.EnumerateArray())
        {
            if (row.ValueKind != JsonValueKind.Object || !row.TryGetProperty("bytes", out var bytes) || !bytes.TryGetInt64(out long b) || b < 0
                || !row.TryGetProperty("out_of_place_bus_bw", out var busbw) || busbw.ValueKind != JsonValueKind.Number || !double.IsFinite(busbw.GetDouble()))
                throw new InvalidDataException($"{path}: rows[{index}] needs a non-negative integer \"bytes\" and a number \"out_of_place_bus_bw\"");
            points.Add((b, busbw.GetDouble()));
            index++;
        }
        return points;
    }

    private static List<(long, double)> FromCsv(string path, string text)
    {
        var points = new List<(long, double)>();
        string[] lines = text.Split('\n');
        bool headerAllowed = true;
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            string[] fields = line.Split(',', StringSplitOptions.TrimEntries);
            bool parsed = fields.Length == 2
                && long.TryParse(fields[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out long bytes) && bytes >= 0
                && double.TryParse(fields[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double busbw) && double.IsFinite(busbw);
            if (!parsed)
            {
                // The first line may name the columns (bytes,busbw); any other line must be two numbers.
                if (headerAllowed && fields.Length == 2 && !char.IsDigit(fields[0].FirstOrDefault())) { headerAllowed = false; continue; }
                throw new InvalidDataException($"{path}:{i + 1}: expected bytes,busbw (an integer and GB/s, e.g. 1048576,12.5), got '{line}'");
            }
            headerAllowed = false;
            points.Add((long.Parse(fields[0], CultureInfo.InvariantCulture), double.Parse(fields[1], CultureInfo.InvariantCulture)));
        }
        return points;
    }
}
