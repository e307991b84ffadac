using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// Grouped-query self-attention over this rank's heads: q, k and v column-parallel (a block of heads), RoPE at the
/// tokens' positions, the new keys and values appended to the request's cache (gathered from every SP rank when the
/// prompt is token-split), causal attention over the cache (the decode kernel for one token), and o row-parallel,
/// whose partial sums leave the TP region.
/// </summary>
internal sealed class AttentionLayer(IDevice device, Tensor q, Tensor k, Tensor v, Tensor o) : IDisposable
{
    public long WeightBytes => q.Bytes + k.Bytes + v.Bytes + o.Bytes;

    /// <summary>x += attention(normed) for the pass's tokens, reading and extending <paramref name="cache"/>.</summary>
    public void Forward(ForwardPass pass, Tensor normed, (Tensor K, Tensor V) cache, Tensor x)
    {
        var kernels = device.Kernels;
        var c = pass.Config;
        var p = pass.Layout;
        int d = c.HeadDim, kvd = p.KvHeads * d, tokens = pass.RegionTokens, start = pass.Start, total = pass.Total;
        var input = pass.Enter(normed);
        kernels.Matmul(input, q, pass.Query);
        kernels.Matmul(input, k, pass.NewKeys);
        kernels.Matmul(input, v, pass.NewValues);
        kernels.Rope(pass.Query.View(tokens, p.QueryHeads, d), pass.Positions, c.RopeTheta);
        kernels.Rope(pass.NewKeys.View(tokens, p.KvHeads, d), pass.Positions, c.RopeTheta);
        var keyRows = cache.K.Narrow(1, start, total).View(total, kvd);
        var valueRows = cache.V.Narrow(1, start, total).View(total, kvd);
        if (pass.TokenSplit)
        {
            // Every rank needs every token's keys and values: gather the slices straight into the cache.
            p.Sp.AllGather(pass.NewKeys, keyRows);
            p.Sp.AllGather(pass.NewValues, valueRows);
        }
        else
        {
            pass.NewKeys.CopyTo(keyRows);
            pass.NewValues.CopyTo(valueRows);
        }
        float scale = 1f / MathF.Sqrt(d);
        if (tokens == 1 && start > 0)
            kernels.AttentionDecode(pass.Query.View(1, p.QueryHeads, d), cache.K, cache.V, pass.Lengths, pass.Attention.View(1, p.QueryHeads, d), scale);
        else
            kernels.AttentionPrefill(pass.Query.View(1, tokens, p.QueryHeads, d), cache.K.Narrow(1, 0, start + total), cache.V.Narrow(1, 0, start + total),
                pass.Attention.View(1, tokens, p.QueryHeads, d), start + pass.RegionOffset, scale);
        kernels.Matmul(pass.Attention, o, pass.Partial);
        kernels.Add(x, pass.LeavePartial(), x); // row-parallel o_proj: partial sums over heads
    }

    public void Dispose()
    {
        q.Dispose();
        k.Dispose();
        v.Dispose();
        o.Dispose();
    }
}
