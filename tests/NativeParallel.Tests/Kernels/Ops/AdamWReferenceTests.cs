using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class AdamWReferenceTests
{
    [Fact]
    public void FirstStepMatchesHandComputedValues()
    {
        // p = 1, g = 0.5 (gradScale 1), m = v = 0, lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.1:
        // p = 1 − 0.1·0.1·1 = 0.99; m = 0.05; v = 0.001·0.25 = 0.00025; bias1 = 0.1, bias2 = 0.001;
        // denom = √0.00025 / √0.001 + 1e-8 = 0.5 + 1e-8; p = 0.99 − (0.1 / 0.1)·0.05 / (0.5 + 1e-8).
        var s = new AdamWSettings(0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
        var (p, m, v) = AdamW.Reference([1.0], [0.5], [0.0], [0.0], s, 1, 1.0);
        // The settings are f32 values, so the hand values use them widened.
        double lr = 0.1f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
        double expectedM = (1 - b1) * 0.5, expectedV = (1 - b2) * 0.25;
        Assert.Equal(0.05, m[0], 1e-7);
        Assert.Equal(0.00025, v[0], 1e-8);
        Assert.Equal(expectedM, m[0], 1e-15);
        Assert.Equal(expectedV, v[0], 1e-15);
        double expectedP = (1 - lr * wd) - lr / (1 - b1) * expectedM / (Math.Sqrt(expectedV) / Math.Sqrt(1 - b2) + eps);
        Assert.Equal(expectedP, p[0], 1e-14);
        Assert.Equal(0.99 - 0.1 / (1 + 2e-8), p[0], 1e-7);
    }

    [Fact]
    public void ThreeStepsMatchTorchDocumentedAlgorithm()
    {
        // torch.optim.AdamW's documented algorithm: θ ← θ − γλθ; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
        // m̂ = m / (1 − β1ᵗ); v̂ = v / (1 − β2ᵗ); θ ← θ − γ·m̂ / (√v̂ + ε). (Its implementation divides √v by √(1 − β2ᵗ)
        // before adding ε, as does the reference: equal to √v̂ + ε exactly in real arithmetic.)
        var s = new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f);
        const double gradScale = 0.25;
        double[] p = [0.5, -1.5, 2.0, 0.0], m = [0, 0, 0, 0], v = [0, 0, 0, 0];
        double[][] grads = [[1.0, -2.0, 0.1, 4.0], [0.5, 0.5, -0.3, -4.0], [-1.0, 1.0, 0.2, 0.0]];
        double[] tp = (double[])p.Clone(), tm = (double[])m.Clone(), tv = (double[])v.Clone();
        double lr = s.LearningRate, b1 = s.Beta1, b2 = s.Beta2, eps = s.Eps, wd = s.WeightDecay;
        for (int t = 1; t <= 3; t++)
        {
            (p, m, v) = AdamW.Reference(p, grads[t - 1], m, v, s, t, gradScale);
            for (int i = 0; i < tp.Length; i++)
            {
                double g = grads[t - 1][i] * gradScale;
                tp[i] -= lr * wd * tp[i];
                tm[i] = b1 * tm[i] + (1 - b1) * g;
                tv[i] = b2 * tv[i] + (1 - b2) * g * g;
                double mHat = tm[i] / (1 - Math.Pow(b1, t)), vHat = tv[i] / (1 - Math.Pow(b2, t));
                tp[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
            for (int i = 0; i < tp.Length; i++)
            {
                Assert.Equal(tm[i], m[i], 1e-14);
                Assert.Equal(tv[i], v[i], 1e-14);
                Assert.Equal(tp[i], p[i], 1e-12);
            }
        }
    }

    [Fact]
    public void CpuStepsTrackTheReferenceOverThreeSteps()
    {
        var s = new AdamWSettings(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f);
        const int n = 1000;
        var rng = new Random(5);
        float[] p0 = new float[n];
        for (int i = 0; i < n; i++) p0[i] = (float)(rng.NextDouble() * 2 - 1);
        var dev = CpuDevice.Instance;
        using var p = Tensor.FromFloats(dev, p0, DType.F32, n);
        using var m = Tensor.FromFloats(dev, new float[n], DType.F32, n);
        using var v = Tensor.FromFloats(dev, new float[n], DType.F32, n);
        using var copy = Tensor.Empty(dev, DType.BF16, n);
        double[] rp = Array.ConvertAll(p0, x => (double)x), rm = new double[n], rv = new double[n];
        for (int t = 1; t <= 3; t++)
        {
            float[] g = new float[n];
            for (int i = 0; i < n; i++) g[i] = (float)(rng.NextDouble() * 2 - 1);
            using var gt = Tensor.FromFloats(dev, g, DType.F32, n);
            AdamW.Step(p, gt, m, v, s, t, 2f, copy);
            (rp, rm, rv) = AdamW.Reference(rp, Array.ConvertAll(g, x => (double)x), rm, rv, s, t, 2.0);
        }
        var got = p.ToFloats();
        var bf = copy.ToFloats();
        for (int i = 0; i < n; i++)
        {
            Assert.True(Math.Abs(got[i] - rp[i]) < 1e-6, $"param[{i}] = {got[i]}, reference {rp[i]}");
            Assert.Equal(FloatBits.RoundTo(DType.BF16, got[i]), bf[i]);
        }
        Assert.Throws<ArgumentException>(() => AdamW.Step(p, p, m, v, s, 0, 1f));
    }
}
