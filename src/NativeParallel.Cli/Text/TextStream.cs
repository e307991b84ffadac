namespace NativeParallel.Cli.Text;

/// <summary>
/// Generated ids to text as they come: each id's new characters are written at once, except a trailing U+FFFD, which
/// is held back because a character's UTF-8 bytes may be split over tokens and the next token may complete it.
/// Decoding the whole continuation each time (not id by id) keeps spaces and merged bytes exactly as
/// <see cref="FolderTokenizer.Decode"/> gives them; after <see cref="Finish"/>, what was written is the decoded continuation
/// (unless invalid UTF-8 bytes made a later token rewrite text already written, which is then left as written).
/// </summary>
internal sealed class TextStream(FolderTokenizer tokenizer, TextWriter output)
{
    private readonly List<int> _ids = [];
    private string _written = "";

    /// <summary>Appends <paramref name="id"/> and writes the characters it completes.</summary>
    public void Add(int id)
    {
        _ids.Add(id);
        string text = tokenizer.Decode(_ids);
        int end = text.Length;
        while (end > 0 && text[end - 1] == '\uFFFD') end--;
        Write(text[..end]);
    }

    /// <summary>Writes whatever was held back (an incomplete character stays U+FFFD) and returns the whole text.</summary>
    public string Finish()
    {
        Write(tokenizer.Decode(_ids));
        output.Flush();
        return _written;
    }

    private void Write(string text)
    {
        // Text already written cannot be taken back; decoding only grows at the end unless bytes were invalid.
        if (text.Length <= _written.Length || !text.StartsWith(_written, StringComparison.Ordinal)) return;
        output.Write(text[_written.Length..]);
        output.Flush();
        _written = text;
    }
}
