namespace NativeParallel.Training;

/// <summary>
/// Batches of (inputs, targets) from llm.c token shards, with llm.c's fixed semantics so other tools can reproduce a
/// run: each step reads B·T+1 consecutive tokens of the current shard at a position that starts at 0 and advances
/// by B·T; when the next read would pass the shard's end the loader moves to the next shard (wrapping to the first)
/// at position 0. Inputs are the first B·T tokens as (B, T), targets the last B·T.
/// </summary>
public sealed class TokenLoader
{
    private readonly string[] _files;
    private ushort[] _tokens;

    /// <summary>Opens the shards <paramref name="files"/> for batches of <paramref name="batch"/> × <paramref name="sequence"/>.</summary>
    public TokenLoader(IReadOnlyList<string> files, int batch, int sequence)
    {
        if (files.Count == 0) throw new ArgumentException("no token shards given");
        if (batch < 1 || sequence < 1) throw new ArgumentException($"batch ({batch}) and sequence ({sequence}) must be at least 1");
        _files = files.ToArray();
        Batch = batch;
        Sequence = sequence;
        // Every shard must hold one batch, or the loader could never read from it.
        foreach (string file in _files)
        {
            long count = TokenShard.Count(file);
            if (count < (long)batch * sequence + 1)
                throw new InvalidDataException($"{file}: {count} tokens cannot fill one batch of {batch}×{sequence}+1 = {(long)batch * sequence + 1} tokens; lower --batch or --seq");
        }
        _tokens = TokenShard.Read(_files[0]);
        MaxToken = _tokens.Length == 0 ? 0 : _tokens.Max();
    }

    /// <summary>Rows per batch.</summary>
    public int Batch { get; }

    /// <summary>Tokens per row.</summary>
    public int Sequence { get; }

    /// <summary>Index of the shard the next batch comes from.</summary>
    public int Shard { get; private set; }

    /// <summary>Token position of the next batch in the current shard.</summary>
    public long Position { get; private set; }

    /// <summary>The largest token id of the first shard (to size or check a vocabulary).</summary>
    public int MaxToken { get; }

    /// <summary>The vocabulary every token must fall in, checked on each shard as it is read (null: unchecked).</summary>
    public int? Vocabulary { get; private set; }

    /// <summary>
    /// Checks the current shard's tokens, and from now on every shard's as it is read, against a vocabulary of
    /// <paramref name="vocabulary"/> ids: a token outside it would index past the embedding.
    /// </summary>
    /// <exception cref="InvalidDataException">A token is outside the vocabulary; the message names the file, the token's index and its id.</exception>
    public void CheckVocabulary(int vocabulary)
    {
        if (vocabulary < 1) throw new ArgumentException($"vocabulary ({vocabulary}) must be at least 1");
        Vocabulary = vocabulary;
        Check(_files[Shard], _tokens);
    }

    private void Check(string file, ushort[] tokens)
    {
        if (Vocabulary is not { } v || v > ushort.MaxValue) return;
        int i = tokens.AsSpan().IndexOfAnyInRange((ushort)v, ushort.MaxValue);
        if (i >= 0) throw new InvalidDataException($"{file}: the token at index {i} is {tokens[i]}, outside the model's vocabulary of {v} (give --vocab or a model with a larger vocabulary)");
    }

    /// <summary>The shard files, in the order they are read.</summary>
    public IReadOnlyList<string> Files => _files;

    /// <summary>Fills <paramref name="inputs"/> and <paramref name="targets"/> (B·T each) and advances.</summary>
    public void Next(Span<int> inputs, Span<int> targets)
    {
        int n = Batch * Sequence;
        if (inputs.Length != n || targets.Length != n) throw new ArgumentException($"inputs and targets must hold B·T = {n} tokens");
        var window = _tokens.AsSpan(checked((int)Position), n + 1);
        for (int i = 0; i < n; i++)
        {
            inputs[i] = window[i];
            targets[i] = window[i + 1];
        }
        Position += n;
        if (Position + n + 1 > _tokens.Length) Seek((Shard + 1) % _files.Length, 0);
    }

    /// <summary>Moves to <paramref name="position"/> of shard <paramref name="shard"/> (resuming a run).</summary>
    public void Seek(int shard, long position)
    {
        if ((uint)shard >= (uint)_files.Length) throw new ArgumentException($"shard {shard} is outside the {_files.Length} shard file(s)");
        if (shard != Shard || _tokens is null)
        {
            var tokens = TokenShard.Read(_files[shard]);
            Check(_files[shard], tokens);
            _tokens = tokens;
        }
        if (position < 0 || position + (long)Batch * Sequence + 1 > _tokens.Length)
            throw new ArgumentException($"position {position} leaves no room for a batch in {_files[shard]} ({_tokens.Length} tokens)");
        Shard = shard;
        Position = position;
    }
}
