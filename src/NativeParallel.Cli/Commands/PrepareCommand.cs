using Microsoft.ML.Tokenizers;
using NativeParallel.Training;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>nativeparallel prepare</c>: text files into an llm.c token shard with GPT-2's tokenizer (Microsoft.ML.Tokenizers
/// and its GPT-2 data package), as llm.c's data scripts do: every document is preceded by GPT-2's end-of-text token.
/// A file is one document, except fortune files (documents separated by lines holding only <c>%</c>).
/// </summary>
internal static class PrepareCommand
{
    /// <summary>GPT-2's &lt;|endoftext|&gt; id.</summary>
    public const int EndOfText = 50256;

    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        var inputs = line.Values("text");
        string output = line.Option("out") ?? throw new UsageException("prepare needs --out FILE.bin");
        string? valOutput = line.Option("val-out");
        double valFraction = line.Double("val-fraction", 0.1);
        line.RejectUnknown();
        if (inputs.Count == 0) throw new UsageException("prepare needs --text FILE|DIR (repeat it for more; e.g. --text /usr/share/games/fortunes, Debian's fortunes package)");
        if (valOutput is not null && valFraction is <= 0 or >= 1) throw new UsageException("--val-fraction must be between 0 and 1");

        var files = new List<string>();
        foreach (string input in inputs)
        {
            if (Directory.Exists(input))
                files.AddRange(Directory.GetFiles(input, "*", SearchOption.AllDirectories).Where(IsText).Order(StringComparer.Ordinal));
            else if (File.Exists(input)) files.Add(input);
            else throw new FileNotFoundException($"no text file or folder at {input}");
        }
        if (files.Count == 0) throw new FileNotFoundException($"no text files under {string.Join(", ", inputs)}");

        var tokenizer = TiktokenTokenizer.CreateForModel("gpt2");
        var documents = new List<int[]>();
        long characters = 0;
        foreach (string file in files)
            foreach (string document in Documents(File.ReadAllText(file)))
            {
                characters += document.Length;
                documents.Add([EndOfText, .. tokenizer.EncodeToIds(document)]);
            }
        if (documents.Count == 0) throw new InvalidDataException($"the text files ({files.Count}) hold no text");

        // The validation shard takes whole documents from the end, so no document is split between the two.
        int valDocuments = valOutput is null ? 0 : Math.Max(1, (int)(documents.Count * valFraction));
        var train = documents.Take(documents.Count - valDocuments).SelectMany(d => d).ToArray();
        TokenShard.Write(output, train);
        Console.WriteLine($"wrote {output}: {train.Length} tokens from {documents.Count - valDocuments} documents ({files.Count} files, {characters} characters), GPT-2 BPE, llm.c shard format");
        if (valOutput is not null)
        {
            var val = documents.Skip(documents.Count - valDocuments).SelectMany(d => d).ToArray();
            TokenShard.Write(valOutput, val);
            Console.WriteLine($"wrote {valOutput}: {val.Length} tokens from {valDocuments} documents (validation)");
        }
        return 0;
    }

    // Fortune files hold text; their .dat index files and anything binary are skipped.
    private static bool IsText(string path)
    {
        if (path.EndsWith(".dat", StringComparison.Ordinal) || path.EndsWith(".u8", StringComparison.Ordinal) && File.Exists(path[..^3])) return false;
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[512];
        int read = stream.Read(head);
        return head[..read].IndexOf((byte)0) < 0;
    }

    private static IEnumerable<string> Documents(string text)
    {
        var current = new System.Text.StringBuilder();
        foreach (string raw in text.Split('\n'))
        {
            string lineText = raw.TrimEnd('\r');
            if (lineText == "%")
            {
                if (current.Length > 0) yield return current.ToString();
                current.Clear();
                continue;
            }
            current.Append(lineText).Append('\n');
        }
        if (current.ToString().Trim().Length > 0) yield return current.ToString();
    }
}
