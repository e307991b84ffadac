using System.Buffers.Binary;

namespace NativeParallel.Training;

/// <summary>
/// llm.c's token shard format: a header of 256 little-endian int32 (magic 20240520, version 1, token count, the rest
/// zero), then the tokens as little-endian uint16. Files written here load in llm.c and its Python tools, and theirs
/// load here.
/// </summary>
public static class TokenShard
{
    /// <summary>The header's first int32.</summary>
    public const int Magic = 20240520;

    /// <summary>The header's second int32.</summary>
    public const int Version = 1;

    /// <summary>Header length in bytes (256 int32).</summary>
    public const int HeaderBytes = 256 * sizeof(int);

    /// <summary>The token count of <paramref name="path"/>, from its header, validated against the file length.</summary>
    public static int Count(string path)
    {
        using var file = File.OpenRead(path);
        return ReadHeader(file, path);
    }

    /// <summary>Reads every token of <paramref name="path"/>, validating the header against the file length.</summary>
    public static ushort[] Read(string path)
    {
        using var file = File.OpenRead(path);
        int count = ReadHeader(file, path);
        var tokens = new ushort[count];
        file.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan()));
        if (!BitConverter.IsLittleEndian) for (int i = 0; i < tokens.Length; i++) tokens[i] = BinaryPrimitives.ReverseEndianness(tokens[i]);
        return tokens;
    }

    // Reads and checks the 1024-byte header; leaves the stream at the first token.
    private static int ReadHeader(FileStream file, string path)
    {
        if (file.Length < HeaderBytes)
            throw new InvalidDataException($"{path}: {file.Length} bytes is shorter than the {HeaderBytes}-byte llm.c shard header");
        Span<byte> header = stackalloc byte[HeaderBytes];
        file.ReadExactly(header);
        int magic = BinaryPrimitives.ReadInt32LittleEndian(header);
        int version = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        if (magic != Magic) throw new InvalidDataException($"{path}: header magic is {magic}, an llm.c token shard has {Magic}");
        if (version != Version) throw new InvalidDataException($"{path}: shard version {version} is not supported (only {Version}: uint16 tokens)");
        long expected = HeaderBytes + 2L * count;
        if (count < 0 || expected != file.Length)
            throw new InvalidDataException($"{path}: header says {count} tokens ({expected} bytes with the header), the file has {file.Length} bytes");
        return count;
    }

    /// <summary>Writes <paramref name="tokens"/> (each in 0..65535) as a shard at <paramref name="path"/>, atomically (temporary file, then rename).</summary>
    public static void Write(string path, ReadOnlySpan<int> tokens)
    {
        var bytes = new byte[HeaderBytes + 2L * tokens.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), Version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] > ushort.MaxValue) throw new ArgumentException($"token {i} is {tokens[i]}: an llm.c shard holds uint16 tokens (0..65535)");
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(HeaderBytes + 2 * i), (ushort)tokens[i]);
        }
        string temporary = path + ".tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The files a <c>--data</c> argument names: one path, or a glob (<c>*</c> and <c>?</c> in the file name) sorted by name.</summary>
    public static string[] Expand(string pattern)
    {
        string name = Path.GetFileName(pattern);
        if (name.IndexOfAny(['*', '?']) < 0)
            return File.Exists(pattern) ? [pattern] : throw new FileNotFoundException($"no token shard at {pattern}");
        string dir = Path.GetDirectoryName(pattern) is { Length: > 0 } d ? d : ".";
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"no folder {dir} for the shard pattern {pattern}");
        var files = Directory.GetFiles(dir, name).Order(StringComparer.Ordinal).ToArray();
        return files.Length > 0 ? files : throw new FileNotFoundException($"no file matches {pattern}");
    }
}
