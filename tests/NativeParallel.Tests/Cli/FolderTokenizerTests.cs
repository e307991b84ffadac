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
