using NativeParallel.Cli.Text;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// The folder's tokenizer read through Microsoft.ML.Tokenizers: Llama 3's and GPT-2's tokenizer.json shapes encode and
/// decode as the file says, unreadable shapes name the file, and streamed text holds back a character split over tokens.
/// </summary>
public sealed class FolderTokenizerTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void ALlama3ShapedFileEncodesWithItsTemplateAndDecodesEveryId()
    {
        TinyTokenizer.Write(_folder);
        var tokenizer = FolderTokenizer.Load(_folder);
        Assert.Equal([TinyTokenizer.BeginOfText, 98, 103], tokenizer.Encode("hello world"));
        // Merges follow their ranks within a pre-token: "helloworld" is one word, and "Ġw" needs the space.
        Assert.Equal([TinyTokenizer.BeginOfText, 98, 'w' - 33, 100, 102], tokenizer.Encode("helloworld"));
        for (int id = 0; id < TinyTokenizer.Size; id++) Assert.Equal(TinyTokenizer.Text([id]), tokenizer.Decode([id]));
        Assert.Equal("<|begin_of_text|>hello world", tokenizer.Decode([TinyTokenizer.BeginOfText, 98, 103]));
    }

    [Fact]
    public void AGpt2ShapedFileSplitsByGpt2sRegexAndAddsNoBeginningToken()
    {
        TinyTokenizer.Write(_folder, gpt2: true);
        var tokenizer = FolderTokenizer.Load(_folder);
        Assert.Equal([98, 103, 94, 98], tokenizer.Encode("hello world hello"));
    }

    [Fact]
    public void ASentencePieceModelEncodesWithBeginningTokenAndDecodesToText()
    {
        WriteSentencePiece(Path.Combine(_folder, "tokenizer.model"));
        var tokenizer = FolderTokenizer.Load(_folder);
        Assert.StartsWith("tokenizer.model: SentencePiece", tokenizer.Description);
        int hello = Pieces.IndexOf("▁hello"), world = Pieces.IndexOf("▁world");
        Assert.Equal([1, hello, world], tokenizer.Encode("hello world"));
        Assert.Equal("hello world", tokenizer.Decode([hello, world]));
        // tokenizer_config.json's add_bos_token false drops <s>, as transformers does.
        File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"), """{"add_bos_token": false}""");
        Assert.Equal([hello, world], FolderTokenizer.Load(_folder).Encode("hello world"));
    }

    // <unk>, <s>, </s>, the characters, and merge pieces whose scores order the merges (higher first) so that
    // "▁hello" and "▁world" are built pair by pair.
    private static readonly List<string> Pieces =
        ["<unk>", "<s>", "</s>", "▁", "h", "e", "l", "o", "w", "r", "d", "ll", "he", "▁he", "▁hell", "▁hello", "or", "ld", "▁w", "▁wor", "▁world"];

    // A SentencePiece ModelProto (sentencepiece_model.proto) written field by field: pieces (1), trainer_spec (2:
    // model_type BPE), normalizer_spec (3: identity, dummy prefix, escaped whitespace).
    private static void WriteSentencePiece(string path)
    {
        using var file = File.Create(path);
        var output = new Google.Protobuf.CodedOutputStream(file);
        for (int id = 0; id < Pieces.Count; id++)
        {
            int type = id == 0 ? 2 : id < 3 ? 3 : 1; // UNKNOWN, CONTROL, NORMAL
            float score = id < 11 ? -100 - id : -id; // single characters last, merges by rank
            var piece = new MemoryStream();
            var p = new Google.Protobuf.CodedOutputStream(piece);
            p.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited); p.WriteString(Pieces[id]);
            p.WriteTag(2, Google.Protobuf.WireFormat.WireType.Fixed32); p.WriteFloat(score);
            p.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); p.WriteEnum(type);
            p.Flush();
            output.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited);
            output.WriteBytes(Google.Protobuf.ByteString.CopyFrom(piece.ToArray()));
        }
        var trainer = new MemoryStream();
        var t = new Google.Protobuf.CodedOutputStream(trainer);
        t.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); t.WriteEnum(2);
        t.WriteTag(4, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(Pieces.Count);
        t.Flush();
        output.WriteTag(2, Google.Protobuf.WireFormat.WireType.LengthDelimited);
        output.WriteBytes(Google.Protobuf.ByteString.CopyFrom(trainer.ToArray()));
        var normalizer = new MemoryStream();
        var n = new Google.Protobuf.CodedOutputStream(normalizer);
        n.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited); n.WriteString("identity");
        n.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(true);
        n.WriteTag(4, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(false);
        n.WriteTag(5, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(true);
        n.Flush();
        output.WriteTag(3, Google.Protobuf.WireFormat.WireType.LengthDelimited);
        output.WriteBytes(Google.Protobuf.ByteString.CopyFrom(normalizer.ToArray()));
        output.Flush();
    }

    [Fact]
    public void ATokenizerJsonThatIsNotByteLevelNeedsTokenizerModelBesideIt()
    {
        File.WriteAllText(Path.Combine(_folder, "tokenizer.json"),
            """{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}, "decoder": {"type": "Metaspace"}}""");
        var e = Assert.Throws<InvalidDataException>(() => FolderTokenizer.Load(_folder));
        Assert.Contains(Path.Combine(_folder, "tokenizer.json"), e.Message);
        Assert.Contains("tokenizer.model", e.Message);
        File.WriteAllText(Path.Combine(_folder, "tokenizer.model"), "not a protobuf");
        e = Assert.Throws<InvalidDataException>(() => FolderTokenizer.Load(_folder));
        Assert.Contains(Path.Combine(_folder, "tokenizer.model"), e.Message);
    }

    [Fact]
    public void StreamedTextHoldsBackACharacterSplitOverTokensAndEndsAsTheDecodedText()
    {
        // é is the bytes C3 A9, which byte-level BPE spells Ã and ©: one token each.
        TinyTokenizer.Write(_folder, gpt2: false, "Ã", "©");
        var tokenizer = FolderTokenizer.Load(_folder);
        int c3 = TinyTokenizer.Size, a9 = TinyTokenizer.Size + 1;
        var output = new StringWriter();
        var stream = new TextStream(tokenizer, output);
        stream.Add(98);
        Assert.Equal("hello", output.ToString());
        stream.Add(c3);
        Assert.Equal("hello", output.ToString());
        stream.Add(a9);
        Assert.Equal("helloé", output.ToString());
        stream.Add(103);
        Assert.Equal("helloé world", stream.Finish());
        Assert.Equal(tokenizer.Decode([98, c3, a9, 103]), output.ToString());
    }
}
