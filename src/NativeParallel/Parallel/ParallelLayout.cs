using NativeParallel.Comm;
using NativeParallel.Models;

namespace NativeParallel.Parallel;

/// <summary>
/// What one rank holds and does in a parallel run: its tensor-parallel shard (heads, MLP columns, vocabulary
/// slice), its pipeline stage (a range of layers), and whether it holds a token slice of the prompt (sequence
/// parallelism). Built from the rank's groups; the same type serves every strategy and their compositions.
/// </summary>
public sealed class ParallelLayout
{
    /// <summary>The groups this rank runs in; size-1 groups mean "not split on this axis".</summary>
    public ParallelLayout(LlamaConfig config, ProcessGroup tp, ProcessGroup pp, ProcessGroup sp, ProcessGroup ep, int[]? stageLayers = null,
        bool megatronSequenceParallel = false)
    {
        var layers = stageLayers ?? EvenStages(config.Layers, pp.Size);
        if (Check(config, tp.Size, pp.Size, sp.Size, ep.Size, megatronSequenceParallel, layers) is { } problem)
            throw new ArgumentException($"parallel layout: {problem}");
        Config = config;
        MegatronSequenceParallel = megatronSequenceParallel && tp.Size > 1;
        Tp = tp;
        Pp = pp;
        Sp = sp;
        Ep = ep;
        ExpertsPerRank = config.Experts == 0 ? 0 : config.Experts / ep.Size;
        FirstExpert = ep.Rank * ExpertsPerRank;
        int t = tp.Size, i = tp.Rank;
        QueryHeads = config.Heads / t;
        int group = config.Heads / config.KvHeads;
        if (config.KvHeads % t == 0)
        {
            KvHeads = config.KvHeads / t;
            FirstKvHead = i * KvHeads;
        }
        else
        {
            // More TP ranks than kv heads: each rank keeps (replicates) the one kv head its query heads read.
            KvHeads = 1;
            FirstKvHead = i * QueryHeads / group;
        }
        FirstQueryHead = i * QueryHeads;
        FfnShard = config.Ffn / t;
        VocabShard = config.Vocab / t;
        FirstVocab = i * VocabShard;
        FirstLayer = layers.Take(pp.Rank).Sum();
        LayerCount = layers[pp.Rank];
    }

    /// <summary>The model shape.</summary>
    public LlamaConfig Config { get; }
    /// <summary>Tensor-parallel group (heads, MLP and vocabulary split across it).</summary>
    public ProcessGroup Tp { get; }
    /// <summary>Pipeline group (one stage per rank, in order).</summary>
    public ProcessGroup Pp { get; }
    /// <summary>Sequence-parallel group (prefill tokens split across it).</summary>
    public ProcessGroup Sp { get; }
    /// <summary>
    /// Megatron's sequence parallelism: the TP group also splits prefill tokens. The residual stream, norms and
    /// elementwise work hold T/t tokens; an all-gather (tokens) comes before each column-parallel layer and a
    /// reduce-scatter (tokens) replaces each row-parallel all-reduce, so communication stays TP's.
    /// </summary>
    public bool MegatronSequenceParallel { get; }

    /// <summary>Expert-parallel group (MoE experts split across it; its ranks serve different requests).</summary>
    public ProcessGroup Ep { get; }
    /// <summary>Experts on this rank.</summary>
    public int ExpertsPerRank { get; }
    /// <summary>First expert on this rank.</summary>
    public int FirstExpert { get; }
    /// <summary>Query heads on this rank.</summary>
    public int QueryHeads { get; }
    /// <summary>First global query head on this rank.</summary>
    public int FirstQueryHead { get; }
    /// <summary>KV heads on this rank.</summary>
    public int KvHeads { get; }
    /// <summary>First global kv head on this rank.</summary>
    public int FirstKvHead { get; }
    /// <summary>MLP width on this rank.</summary>
    public int FfnShard { get; }
    /// <summary>Vocabulary rows on this rank (embedding and LM head).</summary>
    public int VocabShard { get; }
    /// <summary>First vocabulary row on this rank.</summary>
    public int FirstVocab { get; }
    /// <summary>First layer of this rank's stage.</summary>
    public int FirstLayer { get; }
    /// <summary>Layers in this rank's stage.</summary>
    public int LayerCount { get; }
    /// <summary>True on the first pipeline stage (it embeds tokens).</summary>
    public bool FirstStage => Pp.Rank == 0;
    /// <summary>True on the last pipeline stage (it produces logits).</summary>
    public bool LastStage => Pp.Rank == Pp.Size - 1;

    /// <summary>
    /// Why a layout of these degrees cannot hold <paramref name="config"/>, or null when it can: the one place the
    /// shape rules live (the constructor and <see cref="Strategy.Check"/> both ask it).
    /// </summary>
    public static string? Check(LlamaConfig config, int tp, int pp, int sp, int ep, bool megatronSequenceParallel = false, int[]? stageLayers = null)
    {
        if (tp < 1 || pp < 1 || sp < 1 || ep < 1) return "every degree must be at least 1";
        if (megatronSequenceParallel && tp > 1 && sp > 1)
            return "Megatron sequence parallelism splits tokens over the TP group; it does not combine with a separate sp axis";
        if (ep > 1 && config.Experts == 0) return $"ep ({ep}) needs a mixture-of-experts model; this one is dense";
        if (ep > 1 && config.Experts % ep != 0) return $"experts ({config.Experts}) must divide by ep ({ep})";
        if (config.Heads % tp != 0) return $"query heads ({config.Heads}) must divide by tp ({tp})";
        if (config.Ffn % tp != 0) return $"ffn ({config.Ffn}) must divide by tp ({tp})";
        if (config.Vocab % tp != 0) return $"vocab ({config.Vocab}) must divide by tp ({tp})";
        int queryHeads = config.Heads / tp, group = config.Heads / config.KvHeads;
        if (config.KvHeads % tp != 0 && !(tp % config.KvHeads == 0 && group % queryHeads == 0))
            return $"tp ({tp}) must divide kv heads ({config.KvHeads}) or be a multiple of it with whole query groups per rank";
        var layers = stageLayers ?? EvenStages(config.Layers, pp);
        if (layers.Length != pp || layers.Sum() != config.Layers || layers.Any(l => l < 1))
            return $"stage layers [{string.Join(", ", layers)}] must give each of {pp} stages at least one of the {config.Layers} layers";
        return null;
    }

    /// <summary>Layers per stage as evenly as possible, earlier stages taking the remainder.</summary>
    public static int[] EvenStages(int layers, int stages) =>
        Enumerable.Range(0, stages).Select(s => layers / stages + (s < layers % stages ? 1 : 0)).ToArray();
}
