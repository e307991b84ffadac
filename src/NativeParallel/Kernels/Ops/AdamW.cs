using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// One AdamW step, exactly torch.optim.AdamW's update (decoupled weight decay) in torch's order of operations, per
/// element: g = grad·gradScale; p = p·(1 − lr·wd); m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
/// p = p − (lr / (1 − β1ᵗ))·m / (√v / √(1 − β2ᵗ) + eps). param, m, v: f32 (count), updated in place; grad: f32, or
/// bf16 for a bf16 model's gradients (widened on load). step t ≥ 1 (the step being taken, as torch's state["step"] after its increment). gradScale multiplies the
/// gradient first (1/accumulation steps, or a clipping factor). paramCopy, when given, is bf16 (count) and receives the
/// updated param rounded to nearest even. Bias corrections and the step size are computed on the host in double.
/// </summary>
[KernelOp("adamw", "adamw.cu")]
public static unsafe class AdamW
{
    private const string Op = "adamw";
    private static readonly EntryPoints Entry = new("adamw");

    /// <summary>kernels/adamw.cu AdamWArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AdamWArgs
    {
        public ulong Param, Grad, M, V, ParamCopy;
        public long Count;
        public float GradScale, Decay, Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, StepSize, SqrtBias2, Eps;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Step(Tensor param, Tensor grad, Tensor m, Tensor v, in AdamWSettings s, int step, float gradScale, Tensor? paramCopy = null)
    {
        using var traced = Tracer.Kernel("adamw", param, grad, m, v);
        long count = Check(param, grad, m, v, paramCopy, step);
        if (count == 0) return;
        var args = ArgsFor(s, step, gradScale);
        args.Param = param.Pointer;
        args.Grad = grad.Pointer;
        args.M = m.Pointer;
        args.V = v.Pointer;
        args.ParamCopy = paramCopy?.Pointer ?? 0;
        args.Count = count;
        if (OpLaunch.LauncherOf(param) is { } launcher)
        {
            launcher.Launch("adamw.cu", Entry[grad.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        CpuRowKernels.AdamW(args, bf16Grad: grad.DType == DType.BF16);
    }

    private static long Check(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor? paramCopy, int step)
    {
        OpShapes.Require(step >= 1, Op, $"step must be at least 1 (the step being taken), got {step}");
        foreach (var (name, t) in new[] { ("param", param), ("grad", grad), ("m", m), ("v", v) })
        {
            OpShapes.Require(t.IsContiguous, Op, $"{name} must be contiguous, got a strided view {t}");
            OpShapes.Require(ReferenceEquals(t.Device, param.Device), Op, $"{name} is on {t.Device.Name}, param on {param.Device.Name}");
            bool dtypeOk = t.DType == DType.F32 || (name == "grad" && t.DType == DType.BF16);
            OpShapes.Require(dtypeOk && t.Count == param.Count, Op,
                $"{name} must be {(name == "grad" ? "f32 or bf16" : "f32")} with {param.Count} elements (param {param}), got {t}");
        }
        if (paramCopy is not null)
        {
            OpShapes.Require(paramCopy.IsContiguous && ReferenceEquals(paramCopy.Device, param.Device), Op, "paramCopy must be contiguous and on param's device");
            OpShapes.Require(paramCopy.DType == DType.BF16 && paramCopy.Count == param.Count, Op, $"paramCopy must be bf16 with {param.Count} elements, got {paramCopy}");
        }
        return param.Count;
    }

    /// <summary>The scalars of a step, as the kernel takes them: computed in double, rounded once to f32.</summary>
    private static AdamWArgs ArgsFor(in AdamWSettings s, int step, float gradScale)
    {
        double lr = s.LearningRate, beta1 = s.Beta1, beta2 = s.Beta2;
        double bias1 = 1 - Math.Pow(beta1, step), bias2 = 1 - Math.Pow(beta2, step);
        return new AdamWArgs
        {
            GradScale = gradScale,
            Decay = (float)(1 - lr * s.WeightDecay),
            Beta1 = s.Beta1, OneMinusBeta1 = (float)(1 - beta1),
            Beta2 = s.Beta2, OneMinusBeta2 = (float)(1 - beta2),
            StepSize = (float)(lr / bias1),
            SqrtBias2 = (float)Math.Sqrt(bias2),
            Eps = s.Eps,
        };
    }

    /// <summary>
    /// The float64 reference of one step: (param, m, v) after it. Inputs are the state before the step; the settings'
    /// f32 values are used exactly (widened).
    /// </summary>
    public static (double[] Param, double[] M, double[] V) Reference(double[] param, double[] grad, double[] m, double[] v,
        in AdamWSettings s, int step, double gradScale)
    {
        double lr = s.LearningRate, beta1 = s.Beta1, beta2 = s.Beta2, eps = s.Eps, wd = s.WeightDecay;
        double bias1 = 1 - Math.Pow(beta1, step), bias2 = 1 - Math.Pow(beta2, step);
        var p1 = new double[param.Length];
        var m1 = new double[param.Length];
        var v1 = new double[param.Length];
        for (int i = 0; i < param.Length; i++)
        {
            double g = grad[i] * gradScale;
            double p = param[i] - lr * wd * param[i];
            m1[i] = beta1 * m[i] + (1 - beta1) * g;
            v1[i] = beta2 * v[i] + (1 - beta2) * g * g;
            double denom = Math.Sqrt(v1[i]) / Math.Sqrt(bias2) + eps;
            p1[i] = p - lr / bias1 * m1[i] / denom;
        }
        return (p1, m1, v1);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (float wd in new[] { 0f, 0.1f })
            foreach (int count in new[] { 0, 1, 33, 100000 })
                foreach (bool copy in new[] { false, true })
                    yield return Case(count, wd, copy, step: count == 33 ? 1 : 17, DType.F32);
        // A bf16 model's step: bf16 gradients into f32 master weights and moments, the bf16 working copy written.
        foreach (int count in new[] { 1, 33, 100000 }) yield return Case(count, 0.1f, copy: true, step: 5, DType.BF16);
    }

    private static KernelCase Case(int count, float wd, bool copy, int step, DType gradType) =>
        new(Op, gradType, $"count={count} wd={wd} step={step}{(copy ? " bf16 copy" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var settings = new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, wd);
            const float gradScale = 0.5f;
            var p = Random(seed, 1, count, DType.F32);
            var g = Random(seed, 2, count, gradType, -2f, 2f);
            var m = Random(seed, 3, count, DType.F32, -0.1f, 0.1f);
            var v = Random(seed, 4, count, DType.F32, 0f, 0.01f);
            var pt = s.Floats(p, DType.F32, count);
            var mt = s.Floats(m, DType.F32, count);
            var vt = s.Floats(v, DType.F32, count);
            var copyTensor = copy ? s.Poisoned(DType.BF16, count) : null;
            Step(pt, s.Floats(g, gradType, count), mt, vt, settings, step, gradScale, copyTensor);
            var (refP, refM, refV) = Reference(Wide(p), Wide(g), Wide(m), Wide(v), settings, step, gradScale);
            var results = new List<(double, double, string)>
            {
                Compare(pt, refP, DType.F32), Compare(mt, refM, DType.F32), Compare(vt, refV, DType.F32),
                // param's error measured against the step size lr (‖p − p_ref‖ / (lr·√count)), not against p: an
                // error small next to p but large next to the update shows.
                (AgainstStep(pt.ToFloats(), refP, settings.LearningRate), 1e-4, ""),
            };
            if (copyTensor is not null) results.Add(Compare(copyTensor, refP, DType.BF16));
            return Worst([.. results]);
        });

    private static double[] Wide(float[] x) => Array.ConvertAll(x, value => (double)value);

    private static double AgainstStep(float[] got, double[] expected, double lr)
    {
        if (got.Length == 0) return 0;
        double diff = 0;
        for (int i = 0; i < got.Length; i++)
        {
            if (!float.IsFinite(got[i])) return double.NaN;
            diff += (got[i] - expected[i]) * (got[i] - expected[i]);
        }
        return Math.Sqrt(diff / got.Length) / lr;
    }
}
