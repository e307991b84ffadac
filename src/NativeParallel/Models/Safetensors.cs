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

    /// <summary>Reads every tensor of <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not valid safetensors; the message says where.</exception>
    public static Dictionary<string, Entry> Read(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> lengthBytes = stackalloc byte[8];
        if (file.Read(lengthBytes) != 8) throw new InvalidDataException($"{path}: shorter than the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > 100_000_000 || (long)headerLength > file.Length - 8) throw new InvalidDataException($"{path}: header length {headerLength} does not fit the file");
        var header = new byte[headerLength];
        file.ReadExactly(header);
        var result = new Dictionary<string, Entry>(StringComparer.Ordinal);
        try
        {
            ReadTensors(path, file, header, result);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            // A header that parses as something else than the format's JSON: say which file, as for the other checks.
            throw new InvalidDataException($"{path}: the safetensors header is not valid: {e.Message}", e);
        }
        return result;
    }

    private static void ReadTensors(string path, FileStream file, byte[] header, Dictionary<string, Entry> result)
    {
        long dataStart = 8 + header.LongLength;
        using var json = JsonDocument.Parse(header);
        foreach (var property in json.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__") continue;
            var info = property.Value;
            string dtypeName = Field(path, property.Name, info, "dtype").GetString() ?? "";
            var dtype = dtypeName switch
            {
                "F32" => DType.F32,
                "BF16" => DType.BF16,
                "F16" => DType.F16,
                _ => throw new InvalidDataException($"{path}: tensor '{property.Name}' has dtype {dtypeName}; supported: F32, BF16, F16"),
            };
            int[] shape = Field(path, property.Name, info, "shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var offsets = Field(path, property.Name, info, "data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || shape.Any(d => d < 0))
                throw new InvalidDataException($"{path}: tensor '{property.Name}' has data_offsets [{string.Join(", ", offsets)}] and shape [{string.Join(", ", shape)}]");
            long count = shape.Aggregate(1L, (a, b) => a * b), bytes = offsets[1] - offsets[0];
            if (bytes != count * dtype.SizeOf() || dataStart + offsets[1] > file.Length)
                throw new InvalidDataException($"{path}: tensor '{property.Name}' byte range [{offsets[0]}, {offsets[1]}) does not hold {dtypeName} [{string.Join(", ", shape)}]");
            var raw = new byte[bytes];
            file.Position = dataStart + offsets[0];
            file.ReadExactly(raw);
            result[property.Name] = new Entry(dtype, shape, HostEncoding.DecodeFloats(raw, dtype));
        }
    }

    private static JsonElement Field(string path, string tensor, JsonElement info, string key)
        => info.ValueKind == JsonValueKind.Object && info.TryGetProperty(key, out var value) ? value
            : throw new InvalidDataException($"{path}: tensor '{tensor}' has no '{key}'");

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
