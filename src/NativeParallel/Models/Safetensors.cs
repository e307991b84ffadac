using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian data. Read into f32 host arrays (from F32, BF16 or F16);
/// written for tests and tools.
/// </summary>
public static class Safetensors
{
    /// <summary>One tensor of a file: its dtype and shape, and its values widened to f32.</summary>
    public sealed record Entry(DType DType, int[] Shape, float[] Values);

    /// <summary>One tensor as the header describes it: dtype, shape and byte range in the data section.</summary>
    public sealed record TensorInfo(string Name, DType DType, int[] Shape, long Begin, long End)
    {
        /// <summary>Elements (the product of the shape).</summary>
        public long Count => (End - Begin) / DType.SizeOf();
    }

    /// <summary>The largest header this reader accepts (the format's own reference implementation takes 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Reads every tensor of <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not valid safetensors; the message names the file, the tensor and the field.</exception>
    public static Dictionary<string, Entry> Read(string path) => Read(path, _ => true);

    /// <summary>Reads the tensors of <paramref name="path"/> that <paramref name="wanted"/> selects (after checking the whole header).</summary>
    /// <exception cref="InvalidDataException">The file is not valid safetensors; the message names the file, the tensor and the field.</exception>
    public static Dictionary<string, Entry> Read(string path, Func<string, bool> wanted)
    {
        using var file = File.OpenRead(path);
        var (infos, dataStart) = ReadHeader(path, file);
        var result = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (var info in infos)
        {
            if (!wanted(info.Name)) continue;
            // Sized by a range already checked to lie inside the file.
            var raw = new byte[info.End - info.Begin];
            file.Position = dataStart + info.Begin;
            file.ReadExactly(raw);
            result[info.Name] = new Entry(info.DType, info.Shape, HostEncoding.DecodeFloats(raw, info.DType));
        }
        return result;
    }

    /// <summary>
    /// The tensors <paramref name="path"/>'s header describes, checked without reading any data: the header length
    /// against the file, the JSON, each dtype, shape and byte range (inside the file, matching the shape, not
    /// overlapping another). Nothing is allocated from a size the file does not back.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not valid safetensors; the message names the file, the tensor and the field.</exception>
    public static IReadOnlyList<TensorInfo> ReadHeader(string path)
    {
        using var file = File.OpenRead(path);
        return ReadHeader(path, file).Tensors;
    }

    private static (List<TensorInfo> Tensors, long DataStart) ReadHeader(string path, FileStream file)
    {
        Span<byte> lengthBytes = stackalloc byte[8];
        if (file.Length < 8) throw new InvalidDataException($"{path}: {file.Length} bytes is shorter than the 8-byte header length");
        file.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes || headerLength > (ulong)(file.Length - 8))
            throw new InvalidDataException($"{path}: header length {headerLength} does not fit the file ({file.Length} bytes)");
        var header = new byte[headerLength];
        file.ReadExactly(header);
        long dataStart = 8 + header.LongLength, dataBytes = file.Length - dataStart;
        // JSON strings are read lazily; a byte that is not UTF-8 would fail later, inside a name or a dtype.
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw new InvalidDataException($"{path}: the safetensors header is not valid UTF-8");
        JsonDocument json;
        try { json = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: the safetensors header is not valid JSON: {FirstLine(e.Message)}"); }
        using (json)
        {
            if (json.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: the safetensors header is a JSON {json.RootElement.ValueKind}, not an object of tensors");
            var tensors = new List<TensorInfo>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in json.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") continue;
                if (!names.Add(property.Name)) throw new InvalidDataException($"{path}: tensor '{Printable(property.Name)}' appears twice in the header");
                tensors.Add(Describe(path, property.Name, property.Value, dataBytes));
            }
            // Each byte belongs to at most one tensor: sorted by start, each must end before the next begins.
            var sorted = tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToArray();
            for (int i = 1; i < sorted.Length; i++)
                if (sorted[i].Begin < sorted[i - 1].End)
                    throw new InvalidDataException($"{path}: tensor '{Printable(sorted[i].Name)}' data_offsets [{sorted[i].Begin}, {sorted[i].End}) overlap tensor '{Printable(sorted[i - 1].Name)}' [{sorted[i - 1].Begin}, {sorted[i - 1].End})");
            return (tensors, dataStart);
        }
    }

    // One header entry, every field checked for its JSON kind and range before use.
    private static TensorInfo Describe(string path, string name, JsonElement info, long dataBytes)
    {
        string shown = Printable(name);
        string Where(string key) => $"{path}: tensor '{shown}' {key}";
        if (info.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: tensor '{shown}' is a JSON {info.ValueKind}, not an object with dtype, shape and data_offsets");
        var dtypeElement = Field(path, shown, info, "dtype");
        string dtypeName = dtypeElement.ValueKind == JsonValueKind.String ? dtypeElement.GetString()! : throw new InvalidDataException($"{Where("dtype")} is a JSON {dtypeElement.ValueKind}, not a string");
        var dtype = dtypeName switch
        {
            "F32" => DType.F32,
            "BF16" => DType.BF16,
            "F16" => DType.F16,
            _ => throw new InvalidDataException($"{path}: tensor '{shown}' has dtype {Printable(dtypeName)}; supported: F32, BF16, F16"),
        };
        var shapeElement = Field(path, shown, info, "shape");
        if (shapeElement.ValueKind != JsonValueKind.Array || shapeElement.GetArrayLength() > 8)
            throw new InvalidDataException($"{Where("shape")} must be an array of at most 8 dimensions, got {Printable(shapeElement.GetRawText())}");
        var shape = new int[shapeElement.GetArrayLength()];
        long count = 1;
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt32(out shape[d]) || shape[d] < 0)
                throw new InvalidDataException($"{Where("shape")} dimension {d} is {Printable(dim.GetRawText())}, not an integer from 0 to {int.MaxValue}");
            // Saturates instead of overflowing; a count past the data section fails the byte-range check below.
            count = shape[d] == 0 ? 0 : count > long.MaxValue / shape[d] ? long.MaxValue : count * shape[d];
            d++;
        }
        var offsetsElement = Field(path, shown, info, "data_offsets");
        if (offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
            throw new InvalidDataException($"{Where("data_offsets")} must be an array [begin, end], got {Printable(offsetsElement.GetRawText())}");
        Span<long> offsets = stackalloc long[2];
        for (int i = 0; i < 2; i++)
        {
            var o = offsetsElement[i];
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offsets[i]) || offsets[i] < 0)
                throw new InvalidDataException($"{Where("data_offsets")} [{offsetsElement[0].GetRawText()}, {offsetsElement[1].GetRawText()}] are not two non-negative integers");
        }
        if (offsets[1] < offsets[0] || offsets[1] > dataBytes)
            throw new InvalidDataException($"{Where("data_offsets")} [{offsets[0]}, {offsets[1]}) is not inside the file's {dataBytes} data bytes");
        long bytes = offsets[1] - offsets[0];
        if (count > dataBytes || bytes != count * dtype.SizeOf())
            throw new InvalidDataException($"{path}: tensor '{shown}' byte range [{offsets[0]}, {offsets[1]}) does not hold {dtypeName} [{string.Join(", ", shape)}]");
        if (count > Array.MaxLength)
            throw new InvalidDataException($"{path}: tensor '{shown}' has {count} elements, more than one host array holds ({Array.MaxLength})");
        return new TensorInfo(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static JsonElement Field(string path, string tensor, JsonElement info, string key)
        => info.TryGetProperty(key, out var value) ? value : throw new InvalidDataException($"{path}: tensor '{tensor}' has no '{key}'");

    // A value from the file, cut short and kept to one line so a hostile header cannot flood the error.
    private static string Printable(string text)
    {
        string flat = new(text.Select(c => char.IsControl(c) ? ' ' : c).ToArray());
        return flat.Length <= 120 ? flat : flat[..120] + "...";
    }

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();

    /// <summary>Writes <paramref name="tensors"/> (values rounded to each entry's dtype) to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, Entry> tensors)
    {
        var header = new Dictionary<string, object>();
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, entry) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            var bytes = HostEncoding.Encode(entry.Values, entry.DType);
            header[name] = new { dtype = entry.DType switch { DType.F32 => "F32", DType.BF16 => "BF16", _ => "F16" }, shape = entry.Shape, data_offsets = new[] { offset, offset + bytes.Length } };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        using var file = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        file.Write(length);
        file.Write(json);
        foreach (var blob in blobs) file.Write(blob);
    }
}
