using System.Diagnostics;
using System.Text.Json.Nodes;
using NativeParallel.Cli.Text;
using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>run --requests FILE.jsonl [--out FILE.jsonl]</c>: each request in turn on one device, one JSON line per request
/// written as it finishes (its tokens, their text when the folder has a tokenizer, time to first token, latency), for
/// harnesses. Without --out the lines go to stdout and everything else to stderr, so stdout stays JSONL.
/// </summary>
internal static class RunRequests
{
    public static int Run(LlamaConfig config, string? modelFolder, string? deviceName, ulong seed, string requestsPath,
        List<RequestFile.Request> requests, FolderTokenizer? tokenizer, string? outPath)
    {
        var log = outPath is null ? Console.Error : Console.Out;
        using var device = DeviceRegistry.Open(deviceName);
        var weights = modelFolder is null ? new LlamaWeights(config, seed) : HuggingFaceCheckpoint.Load(modelFolder, config.MaxSequence, config.DType);
        log.WriteLine($"model    {(modelFolder is null ? $"the seeded small model (seed {seed})" : modelFolder)}, {config.Parameters / 1e6:F2} M parameters, {config.DType.Name()}");
        log.WriteLine($"device   {device.Name}: {device.Description}");
        log.WriteLine($"requests {requests.Count} from {requestsPath}, one after another from an empty KV cache; tokens are not checked against the reference here (run --prompt-ids checks one)");

        using var model = new LlamaModel(device, weights);
        // Warm-up, a prefill and a decode step: compiles or loads the kernels of both, so the first request's latency is
        // not a compile time.
        using (model.Forward(requests[0].PromptIds)) { }
        using (model.Forward([requests[0].PromptIds[0]])) { }

        using var file = outPath is null ? null : CreateOut(outPath);
        var output = file ?? Console.Out;
        long generated = 0;
        var total = Stopwatch.StartNew();
        foreach (var request in requests)
        {
            var clock = Stopwatch.StartNew();
            var r = Generation.Run(model, device, request.PromptIds, request.MaxTokens, new Sampler(request.Sampling));
            double latencyMs = clock.Elapsed.TotalMilliseconds;
            generated += r.Tokens.Length;
            var line = new JsonObject
            {
                ["id"] = request.Id.DeepClone(),
                ["prompt_tokens"] = request.PromptIds.Length,
                ["prompt_ids"] = new JsonArray(request.PromptIds.Select(id => (JsonNode)id).ToArray()),
                ["tokens"] = new JsonArray(r.Tokens.Select(id => (JsonNode)id).ToArray()),
                ["text"] = tokenizer?.Decode(r.Tokens),
                ["generated_tokens"] = r.Tokens.Length,
                ["time_to_first_token_ms"] = r.FirstTokenMs,
                ["latency_ms"] = latencyMs,
                ["decode_ms_per_token"] = r.Tokens.Length > 1 ? r.DecodeMs / (r.Tokens.Length - 1) : 0,
                ["sampling"] = new JsonObject
                {
                    ["temperature"] = request.Sampling.Temperature, ["top_k"] = request.Sampling.TopK,
                    ["top_p"] = request.Sampling.TopP, ["seed"] = request.Sampling.Seed,
                },
            };
            output.WriteLine(line.ToJsonString(Json));
            output.Flush();
        }
        log.WriteLine($"done     {requests.Count} requests, {generated} tokens generated in {total.Elapsed.TotalMilliseconds:F0} ms{(outPath is null ? "" : $"; wrote {outPath}")}");
        return 0;
    }

    // Text stays readable in the file: only what JSON itself requires is escaped.
    private static readonly System.Text.Json.JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static StreamWriter CreateOut(string path)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        return new StreamWriter(path);
    }
}
