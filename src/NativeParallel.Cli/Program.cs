using NativeParallel.Cli;
using NativeParallel.Cli.Commands;
using NativeParallel.Interop;

return Entry.Run(args);

namespace NativeParallel.Cli
{
    /// <summary>The <c>nativeparallel</c> command: dispatch, usage text and error reporting.</summary>
    internal static class Entry
    {
        public const string Usage = """
            nativeparallel: CUDA kernels and parallel runtime for .NET

            Usage:
              nativeparallel info [--json FILE]
                  Devices, CUDA driver, NVRTC (with the builtins library loaded beside it) and cuBLAS (version and
                  path), kernel cache folder, tunables.
              nativeparallel kernels check [--device cpu|emu|cuda] [--arch sm_80,sm_90] [--op NAME] [--seed N] [--cached]
                                           [--schedules K] [--sanitize] [--kernels DIR] [--json FILE] [--quiet]
                  Compiles every kernel in kernels/ with NVRTC for each arch and prints registers, spill bytes,
                  shared memory and compile time per entry point (a compile error or any spill fails). With
                  --device, also runs every kernel case on fresh random inputs against the CPU reference
                  (outputs poisoned first; relative L2 error within bounds by dtype; NaN fails).
                  emu only: --schedules K runs each case under K fiber interleavings (forward, reverse, seeded
                  shuffles; a different output is a race); --sanitize builds the kernels with AddressSanitizer and
                  UndefinedBehaviorSanitizer. --kernels DIR takes kernel sources from DIR instead of the library.
              nativeparallel bench kernels [--device cuda|cpu] [--repeats N] [--warmup N] [--json FILE] [--markdown FILE] [--trace FILE]
                                           [--plot FILE.png|FILE.svg] [--op NAME] [--version default|all]
                  Times kernels (median of event-timed runs after warm-up, L2 flushed between runs) and prints
                  GB/s or TFLOP/s beside the measured device copy bandwidth and cuBLAS (on CUDA); on the CPU a
                  memory-bound kernel's check column gives its rate warm in L3 against the copy (its ceiling
                  when memory is not the limit). --plot draws each kernel's achieved figure as a share of that limit. --op times
                  one op (residual_add, rmsnorm, layernorm, swiglu, embedding, softmax, attention_decode,
                  attention_prefill, cross_entropy, adamw, moe_combine, matmul_bwd, attention_train, matmul) beside the
                  device copy; --version all times every version of it side by side: on a GPU
                  the bf16 matmul's v2, v3, v4 (beside cuBLAS) and matmul_bwd's v1, v2, v3, the versions
                  NATIVEPARALLEL_KERNEL_VERSION chooses from; on the CPU the matmul's v1 dot products, v2 packed on
                  Vector256 and, with AVX-512, v2 and v3 packed on Vector512.
              nativeparallel bench collectives [--op all_reduce|all_gather|reduce_scatter|broadcast|reduce|all_to_all|sendrecv]
                                               [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-c 0|1] [-d float|bfloat16|half|int32|int64]
                                               [-o sum|prod|max|min|avg] [-r ROOT] [--ranks N] [--transport shm|tcp|threads]
                                               [--device cpu|emu|cuda] [--json FILE] [--trace FILE] [--plot FILE.png|FILE.svg [--baseline FILE]]
                  nccl-tests for our collectives: its flags, columns (size count type redop root | time algbw busbw #wrong,
                  out-of-place then in-place), busbw formulas and footer. #wrong is exact. Inside a launched job each
                  process is a rank; alone, --ranks N starts N local ranks (processes, or threads with --transport threads).
                  Processes take shm between ranks on one host and tcp between hosts (the header says shm, tcp or
                  shm+tcp); --transport shm|tcp forces one for every pair.
                  --device puts the buffers on a GPU (or the emulated device): ranks sharing it run all_reduce,
                  all_gather, reduce_scatter, broadcast and all_to_all device-direct on each other's buffers (thread
                  ranks by address, process ranks on one GPU through CUDA IPC); reduce and sendrecv stage through host
                  memory. The footer's "# Device path" line counts direct calls and staged bytes.
                  --plot draws busbw against message size (log scale), out-of-place and in-place; --baseline FILE adds
                  another run's curve: our own bench collectives --json report, or a CSV of bytes,busbw lines (GB/s; an
                  optional header line and # comments allowed), labelled with the file's name.
              nativeparallel bench collectives --soak N [--seed S] [-e MAX] [--ranks N] [--transport shm|tcp|threads] [--json FILE] [--quiet]
                  N random collectives (op, dtype, reduction, size 0 to MAX (default 8M), root, in or out of place,
                  sync and async), every rank's result checked exactly against a host computation; a summary line and
                  the steps per decade of size, each wrong step on stderr, exit 1 on any error. Sizes (bytes of the
                  whole collective): step i (from 0) with i mod 100 = 99 is log-uniform in (MAX/2, MAX] and takes the
                  ops in turn (N = 2000: each op at least twice there); i mod 100 = 49 is log-uniform in [MAX/32,
                  MAX/2]; any other step is 0 B with probability 1/16, else log-uniform in [1 B, MAX/32].
              nativeparallel launch -n N [--transport shm|tcp] -- COMMAND [ARGS...]
                  Starts N ranks of COMMAND on this host with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
                  LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and prefixes their output with the rank.
              nativeparallel run [--device auto|cpu|cuda] [--model DIR] [--dtype f32|bf16] [--prompt TEXT | --prompt-ids 1,2,3 | --prompt-tokens N]
                                 [--new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed N]
                                 [--strategy all|none|"tp=2,pp=2;sp=2"] [--json FILE] [--trace FILE] [--plot FILE.png|FILE.svg] [--quiet]
              nativeparallel run [--model DIR] [--device D] [--dtype f32|bf16] [--new-tokens N] [sampling options]
                                 --requests FILE.jsonl [--out FILE.jsonl]
                  The main job: a small Llama-style decoder on one device (prefill, then greedy decode over a KV
                  cache) checked against the host reference; then every parallel strategy (dp, pp, tp, sp, tp+sp,
                  ep on a mixture-of-experts twin, and compositions) on local ranks, each checked against the
                  single-device run, in the seed's table: memory per rank, bytes communicated per token (measured and
                  predicted), prefill latency, decode latency per token, throughput, pipeline bubble. --model DIR
                  loads a Hugging Face Llama or Mixtral folder (config.json + *.safetensors) instead of the seeded
                  small model (--dtype converts it); ep rows run a Mixtral folder's own experts. Strategies are
                  checked against the model's shape before any work (a misfit or typo exits 2). One rule by dtype
                  decides every ok/FAIL and the exit code: logits within 1e-4 (f32) or 3e-2 (bf16), identical greedy
                  tokens (f32; bf16 near ties may flip), ranks bitwise identical. Inside a launched job (launch,
                  torchrun, mpirun) it is one rank of one --strategy: the --model weights sharded by the layout, on
                  --device, checked the same way; rank 0 prints the tokens of the single-device run's prompt (the
                  --prompt's, with their text, when given). --plot draws the table's four axes per strategy (memory
                  per rank, bytes per token measured and predicted, prefill and decode latency, tokens/s).
                  --prompt TEXT tokenizes with the --model folder's own tokenizer (tokenizer.json, byte-level BPE as
                  GPT-2 and Llama 3 write it, or tokenizer.model, SentencePiece; Microsoft.ML.Tokenizers) and prints
                  the continuation as text while it is generated; --prompt-ids takes exact ids (decoded too when the
                  folder has a tokenizer); without either, a seeded random prompt of --prompt-tokens (default 24).
                  A prompt run skips the strategy table unless --strategy is given. Sampling (greedy by default):
                  --temperature T (0 greedy), --top-k K (0 off), --top-p P (1 off), drawn from --seed (default 1234)
                  so a rerun, and every rank of a launched job, draws the same tokens; sampled tokens are checked
                  against the host reference drawing with the same seed.
                  --requests FILE.jsonl: one request per line, {"id": ..., "prompt": "text"} or {"prompt_ids": [..]},
                  each with optional max_tokens, temperature, top_k, top_p, seed (the options' values otherwise);
                  run one after another on one device, one JSON line each (id, prompt_ids, tokens, text,
                  time_to_first_token_ms, latency_ms, decode_ms_per_token, sampling) written to --out FILE.jsonl as
                  it finishes, or to stdout (the log then goes to stderr). Not checked against the reference.
              nativeparallel train --data FILE|GLOB [--model DIR | --resume DIR] [--batch B] [--seq T] [--steps N] [--lr LR]
                                   [--weight-decay WD] [--beta1 B1] [--beta2 B2] [--eps EPS] [--grad-clip C] [--warmup N] [--cosine]
                                   [--min-lr LR] [--recompute] [--val-data FILE|GLOB] [--val-every K] [--val-batches N] [--vocab N] [--dtype f32|bf16]
                                   [--experts N] [--capacity F]
                                   [--device auto|cpu|cuda|emu] [--seed N] [--save DIR] [--checkpoint DIR] [--checkpoint-every K]
                                   [--dp N] [--bucket-mb MB] [--zero 0|1] [--tp N] [--pp N] [--micro-batches M]
                                   [--sp] [--schedule 1f1b|gpipe] [--strategy LAYOUT|all|"dp=2;tp=2,pp=2"] [--json FILE] [--trace FILE]
                                   [--plot FILE.png|FILE.svg] [--quiet]
                  Trains a Llama-style decoder from llm.c token shards (step s reads B·T+1 tokens at
                  position s·B·T, wrapping at the end). Loss: mean cross-entropy over B·T targets; gradients clipped
                  to a global norm as torch.nn.utils.clip_grad_norm_ (0 = off); AdamW as torch.optim.AdamW (decay on
                  2-D tensors only); constant learning rate, or --warmup N steps and --cosine to --min-lr. Defaults:
                  B 8, T 64, 50 steps, lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01, clip 1.0. Without
                  --model, the seeded small config with vocab 1000, or 50257 (GPT-2) when the data has larger ids.
                  --experts N makes it a Mixtral-style mixture of experts (N SwiGLU experts per layer, top-2 router,
                  softmax over the two logits), as does a Mixtral --model folder; --capacity F caps each expert at
                  ceil(F x routings / experts) per layer call, keeping its first routings in token order (0: no cap;
                  with a cap, each data-parallel replica and micro-batch caps its own routings; a checkpoint keeps
                  F and --resume uses it unless --capacity is given).
                  Router and every expert train; MoE trains on one device, with dp and pp, and with --strategy ep=N:
                  the experts spread over N data-parallel ranks (all-to-alls there and back, and in reverse in
                  backward; ep composes with micro-batches and nothing else yet). tp and sp are refused (they do
                  not split experts). A checkpoint saved at ep=N resumes at ep=N bit for bit, or in another layout.
                  One line per step (loss, gradient norm, lr, ms, tokens/s, validation loss every K steps with
                  --val-data). --save DIR writes a Hugging Face folder that 'run --model DIR' loads; --checkpoint
                  DIR adds AdamW's moments and the data position, and --resume DIR continues bit for bit.
                  --dtype bf16: weights as forward reads them, activations and gradients in bf16, master weights
                  and AdamW moments in f32 (llm.c's mixed precision); --save and checkpoints keep the f32 masters.
                  Parallel layouts, any composition (ranks as threads sharing the device; inside a launched job
                  every process is one rank): --strategy "dp=2,zero=1,tp=2,pp=2,mb=4,1f1b", or the options:
                  --dp N: data parallelism, the batch's rows split over N replicas, gradients all-reduced in
                  --bucket-mb buckets (default 25) while backward runs; --zero 1 (ZeRO stage 1): gradients
                  reduce-scattered, AdamW's moments and update sharded, weights all-gathered.
                  --tp N: Megatron tensor parallelism (q/k/v and gate/up column-parallel, o and down
                  row-parallel; embedding, LM head and cross-entropy vocabulary-parallel).
                  --sp (with --tp): Megatron's sequence parallelism: norms and the residual stream on 1/tp of
                  the tokens, all-gathers before and reduce-scatters after the parallel blocks.
                  --pp N --micro-batches M --schedule 1f1b|gpipe: layers in N stages, M micro-batches (default N)
                  under 1F1B (default; at most N-s micro-batches in flight on stage s) or GPipe (all M); bubble
                  (N-1)/(M+N-1). --micro-batches without --pp accumulates gradients.
                  Every layout trains the single-device model; --save and --checkpoint merge every rank's part
                  into one folder, and --resume continues it in any layout.
                  --strategy all (or a ';' list of layouts): the seed's table for training instead of one run:
                  each layout trains --steps steps on thread ranks from the same weights and data, printed with
                  memory and activations per rank, bytes sent per step beside the ring formulas, step time,
                  bubble, and its check against the single-device losses and replica equality. A mixture of
                  experts adds ep=2, ep=2,mb=2 and ep=4. 'all' leaves out a layout the model or batch does not
                  fit, or whose losses a capacity cap keeps from one device's (dp, micro-batches), with a line
                  'skipped LAYOUT: reason'; a ';' list refuses such a layout with the same reason.
                  --recompute keeps only the residual stream between forward and backward and recomputes each
                  layer's other activations in backward (the same gradients, bit for bit; the memory line shows it).
                  --plot draws the loss curve (validation losses as markers), or with --strategy all every layout's
                  curve on one chart.
              nativeparallel prepare --text FILE|DIR [--text ...] --out FILE.bin [--val-out FILE.bin] [--val-fraction F]
                  Text into an llm.c token shard with GPT-2's tokenizer (Microsoft.ML.Tokenizers); every document
                  starts with <|endoftext|>; a file is a document, fortune files split at '%' lines. --val-out
                  keeps the last F (default 0.1) of the documents as a validation shard.

            Every command takes --help and exits non-zero on failure.
            --json FILE (info, kernels check, bench kernels, bench collectives, run, train) writes one JSON object that
            starts with the same header: command, options (as given: a value's text, true for a flag, a list when
            repeated), version, git_revision (the commit the build was made from, or "unknown"), created_utc and
            machine (host, cpu_model, logical_cores, memory_bytes, os, architecture, dotnet; cuda_driver, nvidia_driver
            and gpus where present, nvrtc where found); the command's own results follow.
            --plot FILE (bench collectives, bench kernels, run, train) draws a chart with ScottPlot: PNG or SVG by the
            file's extension.
            Progress: kernels check, run, train and the soak show a live bar on an interactive terminal; when output
            is redirected they write plain "progress ..." lines to stderr instead (no ANSI codes), as items finish, at
            most one per NATIVEPARALLEL_PROGRESS_S seconds; --quiet shows neither (results and errors still print).
            --trace FILE (run, train, bench kernels, bench collectives) writes a Chrome trace that Perfetto
            (ui.perfetto.dev) and chrome://tracing open: a process per rank, a compute lane (phases, kernels, launches)
            and a lane per process group (collectives with bytes, peers, algorithm, sequence number); host clock, so
            on CUDA a launch is its enqueue. train prints the share of the gradient buckets' all-reduce time that ran
            during backward. Processes of a launched job each write FILE with .rankN before the extension.

            Environment (read in one place):
            """;

        public static int Run(string[] args)
        {
            try
            {
                if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
                {
                    PrintUsage();
                    return args.Length == 0 ? 2 : 0;
                }
                // A misspelt kernel version fails here, once, before any work (not as every launch's failure).
                NativeParallel.Kernels.KernelVersions.CheckEnvironment();
                return args[0] switch
                {
                    "info" => InfoCommand.Run(new CommandLine(args[1..], "help")),
                    "kernels" when args.Length > 1 && args[1] == "check" => KernelsCheckCommand.Run(new CommandLine(args[2..], "help", "cached", "sanitize", "quiet")),
                    "bench" when args.Length > 1 && args[1] == "kernels" => BenchKernelsCommand.Run(new CommandLine(args[2..], "help")),
                    "bench" when args.Length > 1 && args[1] == "collectives" => BenchCollectivesCommand.Run(args[2..]),
                    "launch" => LaunchCommand.Run(args[1..]),
                    "run" => RunCommand.Run(new CommandLine(args[1..], "help", "quiet")),
                    "train" => TrainCommand.Run(new CommandLine(args[1..], "help", "cosine", "recompute", "sp", "quiet")),
                    "prepare" => PrepareCommand.Run(new CommandLine(args[1..], "help")),
                    _ => throw new UsageException($"unknown command '{string.Join(' ', args.Take(2))}'"),
                };
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"nativeparallel: {e.Message}. See 'nativeparallel --help'.");
                return 2;
            }
            catch (Exception e)
            {
                return Fail(e, Console.Error);
            }
        }

        /// <summary>
        /// Reports an exception that ended a command: one line, <c>nativeparallel: Type: message</c>, and exit code 1
        /// (2 for a usage error). A failure the project expects (CUDA, NVRTC, cuBLAS, a kernel launch, a collective, a
        /// missing library, out of memory, a bad file or argument) prints its message; anything else is a bug and says
        /// so, with a hint to rerun with NATIVEPARALLEL_DEBUG=INFO, which adds the stack trace below the line (the only
        /// case in which one is printed). Multi-line messages (an NVRTC compile log, the paths a library search tried)
        /// keep their detail lines, indented under the one line, when NATIVEPARALLEL_DEBUG=INFO is set.
        /// </summary>
        public static int Fail(Exception exception, TextWriter error)
        {
            Exception e = Unwrap(exception);
            if (e is UsageException)
            {
                error.WriteLine($"nativeparallel: {e.Message}. See 'nativeparallel --help'.");
                return 2;
            }
            bool debug = NativeParallel.Diagnostics.Tunables.Debug >= NativeParallel.Diagnostics.LogLevel.Info;
            string[] lines = e.Message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            string first = lines.Length == 0 ? "(no message)" : lines[0];
            string more = lines.Length > 1 && !debug ? $" ({lines.Length - 1} more lines with NATIVEPARALLEL_DEBUG=INFO)" : "";
            if (IsExpected(e))
                error.WriteLine($"nativeparallel: {TypeName(e)}: {first}{more}");
            else
                error.WriteLine($"nativeparallel: {TypeName(e)}: {first}{more} (unexpected; rerun with NATIVEPARALLEL_DEBUG=INFO for the stack trace)");
            if (debug)
            {
                foreach (string line in lines.Skip(1)) error.WriteLine($"  {line}");
                error.WriteLine(exception.ToString());
            }
            return 1;
        }

        /// <summary>The failures a command can meet on a sound machine with bad input or a faulty device: not bugs.</summary>
        public static bool IsExpected(Exception e) => e is CudaException or NvrtcException or CublasException or NativeLibraryNotFoundException
            or NativeParallel.Devices.KernelLaunchException or NativeParallel.Comm.CollectiveException or OutOfMemoryException
            or IOException or InvalidDataException or UnauthorizedAccessException or System.Text.Json.JsonException or FormatException or OverflowException
            or InvalidOperationException or ArgumentException or NotSupportedException or TimeoutException
            or System.Net.Sockets.SocketException or OperationCanceledException;

        // Exceptions from thread ranks or reflection arrive wrapped; the one inside is what went wrong. When several
        // ranks failed, the first whose failure is its own: a rank's collective failing because a peer left is a
        // consequence, and ranks that failed alike say the same thing once.
        private static Exception Unwrap(Exception e)
        {
            while (true)
            {
                if (e is AggregateException a && a.Flatten().InnerExceptions is { Count: > 0 } inner)
                    e = inner.FirstOrDefault(x => x is not NativeParallel.Comm.CollectiveException) ?? inner[0];
                else if (e is System.Reflection.TargetInvocationException { InnerException: { } t }) e = t;
                else if (e is TypeInitializationException { InnerException: { } ti }) e = ti;
                else return e;
            }
        }

        // The nearest public type: System.Text.Json throws its internal JsonReaderException, which users know as JsonException.
        private static string TypeName(Exception e)
        {
            Type t = e.GetType();
            while (!(t.IsPublic || t.IsNestedPublic) && t.BaseType is { } b) t = b;
            return t.Name;
        }

        public static void PrintUsage()
        {
            Console.WriteLine(Usage);
            foreach (var (name, meaning) in NativeParallel.Diagnostics.Tunables.All) Console.WriteLine($"  {name,-26} {meaning}");
        }

        /// <summary>Prints a command's usage when --help was given; returns true if so.</summary>
        public static bool HelpRequested(CommandLine line)
        {
            if (!line.Help) return false;
            PrintUsage();
            return true;
        }
    }
}
