namespace NativeParallel.Cli.Text;

/// <summary>
/// What <c>run</c> generates from: <c>--prompt</c> text through the model folder's own tokenizer, exact
/// <c>--prompt-ids</c>, or neither (null <see cref="Ids"/>: the run's seeded random prompt). The tokenizer, when the
/// folder has one, also turns the generated ids back into text.
/// </summary>
internal sealed record PromptInput(int[]? Ids, FolderTokenizer? Tokenizer, string? Text)
{
    /// <summary>Reads the options, checked against the model's vocabulary before any weight is read.</summary>
    public static PromptInput Read(string? text, string? idsText, string? modelFolder, int vocab)
    {
        if (text is not null && idsText is not null) throw new UsageException("give --prompt or --prompt-ids, not both");
        if (text is not null)
        {
            if (modelFolder is null) throw new UsageException("--prompt needs --model DIR with the model's tokenizer (the seeded model has none); --prompt-ids takes exact ids");
            if (!FolderTokenizer.Exists(modelFolder))
                throw new UsageException($"--prompt: {modelFolder} has no tokenizer (neither tokenizer.json nor tokenizer.model); copy the model's tokenizer files into it, or give --prompt-ids");
            var tokenizer = FolderTokenizer.Load(modelFolder);
            int[] encoded = tokenizer.Encode(text);
            if (encoded.Length == 0) throw new UsageException("--prompt gives no tokens; give some text");
            return new PromptInput(Check(encoded, vocab, $"--prompt (through {modelFolder}/{tokenizer.Description})"), tokenizer, text);
        }
        if (idsText is null) return new PromptInput(null, null, null);
        var ids = new List<int>();
        foreach (string part in idsText.Split(',', StringSplitOptions.TrimEntries))
            ids.Add(int.TryParse(part, out int id) ? id : throw new UsageException($"--prompt-ids expects comma-separated token ids (e.g. 1,2,3), got '{part}'"));
        var folderTokenizer = modelFolder is not null && FolderTokenizer.Exists(modelFolder) ? FolderTokenizer.Load(modelFolder) : null;
        return new PromptInput(Check(ids.ToArray(), vocab, "--prompt-ids"), folderTokenizer, null);
    }

    private static int[] Check(int[] ids, int vocab, string source)
    {
        foreach (int id in ids)
            if (id < 0 || id >= vocab) throw new UsageException($"{source}: token id {id} is outside the model's vocabulary (0..{vocab - 1})");
        return ids;
    }
}
