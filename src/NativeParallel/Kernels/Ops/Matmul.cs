using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The linear layer's product c = a · bᵀ with f32 accumulation. a: (m, k); b: (n, k), the nn.Linear weight layout;
/// c: (m, n). a and b are both f32 or both bf16; c is f32 or bf16. m, n or k may be 0 (k = 0 gives zeros).
/// On a device, bf16 operands run the tensor-core version of <see cref="KernelVersions"/> (v2, v3, v4; default v3),
/// f32 operands the SIMT tiles (v1).
/// </summary>
[KernelOp("matmul", "matmul.cu")]
public static unsafe class Matmul
{
    private const string Op = "matmul";
    private const uint Tile = 64;            // MM_BM = MM_BN = TC_BM = TC_BN in matmul.cu
    private const uint TensorCoreTile = 128; // G3_BM = G3_BN in matmul.cu (v3 and v4)

    // Every version's entry points, by the dtype of c: named once, picked per launch without string work.
    private static readonly (string F32, string BF16) V1 = ("matmul_f32_f32", "matmul_f32_bf16");
    private static readonly (string F32, string BF16) V2 = ("matmul_tc_bf16_f32", "matmul_tc_bf16_bf16");
    private static readonly (string F32, string BF16) V3 = ("matmul_v3_bf16_f32", "matmul_v3_bf16_bf16");
    private static readonly (string F32, string BF16) V4 = ("matmul_v4_bf16_f32", "matmul_v4_bf16_bf16");

    /// <summary>kernels/matmul.cu MatmulArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MatmulArgs
    {
        public ulong A, B, C;
        public int M, N, K;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor a, Tensor b, Tensor c)
    {
        // c (m, n) = a (m, k) · bᵀ: one multiply and one add per (m, n, k).
        using var traced = Tracer.Kernel(Op, 2 * c.Count * a.Dim(-1), a, b, c);
        var (m, n, k) = Shapes(a, b, c);
        if (OpLaunch.LauncherOf(a) is { } launcher)
        {
            if (m == 0 || n == 0) return;
            var args = new MatmulArgs { A = a.Pointer, B = b.Pointer, C = c.Pointer, M = m, N = n, K = k };
            bool bf16Out = c.DType == DType.BF16;
            // bf16 operands go to the tensor cores (v3, v4: 128 x 128 tiles of 8 warps; v2: 64 x 64 of 4); f32
            // operands to the SIMT tiles (v1).
            string version = a.DType == DType.BF16 ? KernelVersions.Selected(Op) : "v1";
            switch (version)
            {
                case "v3" or "v4":
                    var entry = version == "v3" ? V3 : V4;
                    launcher.Launch("matmul.cu", bf16Out ? entry.BF16 : entry.F32,
                        new Gpu.Dim3(OpLaunch.Tiles(n, TensorCoreTile), OpLaunch.Tiles(m, TensorCoreTile)), new Gpu.Dim3(256), 0, args);
                    break;
                case "v2":
                    launcher.Launch("matmul.cu", bf16Out ? V2.BF16 : V2.F32, new Gpu.Dim3(OpLaunch.Tiles(n, Tile), OpLaunch.Tiles(m, Tile)), new Gpu.Dim3(128), 0, args);
                    break;
                default:
                    launcher.Launch("matmul.cu", bf16Out ? V1.BF16 : V1.F32, new Gpu.Dim3(OpLaunch.Tiles(n, Tile), OpLaunch.Tiles(m, Tile)), new Gpu.Dim3(256), 0, args);
                    break;
            }
            return;
        }
        Cpu(a, b, c, m, n, k);
    }

    private static (int M, int N, int K) Shapes(Tensor a, Tensor b, Tensor c)
    {
        OpShapes.Common(Op, ("a", a), ("b", b), ("c", c));
        OpShapes.Require(a.Rank == 2 && b.Rank == 2 && c.Rank == 2, Op, $"a (m, k), b (n, k), c (m, n) must be 2-D, got {a}, {b}, {c}");
        OpShapes.FloatType(Op, "a", a, DType.F32, DType.BF16);
        OpShapes.Require(b.DType == a.DType, Op, $"a and b must share one dtype, got {a.DType.Name()} and {b.DType.Name()}");
        OpShapes.FloatType(Op, "c", c, DType.F32, DType.BF16);
        int m = a.Dim(0), k = a.Dim(1), n = b.Dim(0);
        OpShapes.Require(b.Dim(1) == k, Op, $"b must be (n, {k}), got {b}");
        OpShapes.Require(c.Dim(0) == m && c.Dim(1) == n, Op, $"c must be ({m}, {n}), got {c}");
        // Row tiles go on grid.y, which CUDA caps at 65535 blocks of 64 rows.
        OpShapes.Require(m <= 65535 * 64, Op, $"m = {m} exceeds {65535 * 64} rows; split the batch");
        return (m, n, k);
    }

    // The CPU matmul's versions (v1 dot products, v2 and v3 packed; see Kernels/Cpu/CpuGemm.cs, CpuPackedGemm*.cs)
    // are chosen by CpuGemm.PackedFromRows and CpuPackedGemm's vector width and version.
    private static void Cpu(Tensor a, Tensor b, Tensor c, int m, int n, int k)
    {
        if (m >= CpuGemm.PackedFromRows && a.DType is DType.F32 or DType.BF16 && b.DType is DType.F32 or DType.BF16)
        {
            // f32 and bf16 operands go to the packed GEMM as they are: it widens bf16 while packing (no f32 copies
            // of a or b), and rounds a bf16 c tile by tile as it finishes (the scratch holds the partial sums).
            CpuPackedGemm.Operand x = CpuPackedGemm.Operand.Of(a, k, 1), y = CpuPackedGemm.Operand.Of(b, k, 1);
            if (c.DType == DType.F32) CpuPackedGemm.Multiply(m, n, k, x, y, (float*)c.Pointer, n, accumulate: false);
            else CpuPackedGemm.MultiplyToBf16(m, n, k, x, y, (ushort*)c.Pointer, n);
            return;
        }
        using var av = F32View.Input(a);
        using var bv = F32View.Input(b);
        using var cv = F32View.Output(c);
        CpuGemm.MultiplyTransposed(av.Pointer, bv.Pointer, cv.Pointer, m, n, k);
    }

    /// <summary>The float64 reference: c = a · bᵀ with a: (m, k), b: (n, k).</summary>
    public static double[] Reference(float[] a, float[] b, int m, int n, int k)
    {
        var c = new double[(long)m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += (double)a[(long)i * k + p] * b[(long)j * k + p];
                c[(long)i * n + j] = sum;
            }
        return c;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var (inType, outType) in new[] { (DType.F32, DType.F32), (DType.BF16, DType.BF16), (DType.BF16, DType.F32), (DType.F32, DType.BF16) })
            foreach (var (m, n, k) in new[] { (0, 4, 4), (1, 1, 1), (1, 33, 31), (33, 31, 65), (64, 64, 64), (100, 130, 257), (136, 200, 96), (5, 7, 0) })
                yield return Case(inType, outType, m, n, k);
    }

    private static KernelCase Case(DType inType, DType outType, int m, int n, int k) =>
        new(Op, inType, $"m={m} n={n} k={k} out={outType.Name()}", (device, seed) =>
        {
            using var s = new Scope(device);
            var a = Random(seed, 1, (long)m * k, inType);
            var b = Random(seed, 2, (long)n * k, inType);
            var c = s.Poisoned(outType, m, n);
            Run(s.Floats(a, inType, m, k), s.Floats(b, inType, n, k), c);
            // bf16 anywhere (operands or output rounding) takes the bf16 bound.
            return Compare(c, Reference(a, b, m, n, k), inType == DType.F32 && outType == DType.F32 ? DType.F32 : DType.BF16);
        });
}
