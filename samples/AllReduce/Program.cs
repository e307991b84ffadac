using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Tensors;

// One rank of a job started by torchrun or `nativeparallel launch -n N`: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
// and MASTER_PORT say where it sits and where rank 0 hosts the rendezvous. Started alone, it is a group of one.
using var group = ProcessGroup.FromEnvironment();
int rank = group.Rank, size = group.Size;
using var device = DeviceRegistry.Open("auto"); // the best device present: the first GPU, else the CPU

// All-reduce: every rank adds rank + 1 + (i % 3). Small integers sum exactly in f32, so the check is equality.
const int Rows = 4, Cols = 8;
var mine = Enumerable.Range(0, Rows * Cols).Select(i => (float)(rank + 1 + i % 3)).ToArray();
using var x = Tensor.FromFloats(device, mine, DType.F32, Rows, Cols);
group.AllReduce(x);
float[] sum = x.ToFloats();
for (int i = 0; i < sum.Length; i++)
{
    float want = size * (size + 1) / 2 + size * (i % 3);
    if (sum[i] != want) return Fail($"all_reduce element {i} is {sum[i]}, expected {want}");
}
Console.WriteLine($"rank {rank} of {size}: all_reduce of {sum.Length} f32 on {device.Name}: exact");

// A kernel on the same device, fed by the collective: y = x · wᵀ with small integer weights, exact as well.
const int Outputs = 3;
var weights = Enumerable.Range(0, Outputs * Cols).Select(i => (float)(i % 4 - 1)).ToArray();
using var w = Tensor.FromFloats(device, weights, DType.F32, Outputs, Cols);
using var y = Tensor.Empty(device, DType.F32, Rows, Outputs);
device.Kernels.Matmul(x, w, y);
float[] got = y.ToFloats();
for (int r = 0; r < Rows; r++)
    for (int o = 0; o < Outputs; o++)
    {
        float want = 0;
        for (int k = 0; k < Cols; k++) want += sum[r * Cols + k] * weights[o * Cols + k];
        if (got[r * Outputs + o] != want) return Fail($"matmul element ({r}, {o}) is {got[r * Outputs + o]}, expected {want}");
    }
Console.WriteLine($"rank {rank} of {size}: matmul ({Rows}x{Cols} by {Cols}x{Outputs}) on {device.Name}: exact");
return 0;

int Fail(string what)
{
    Console.Error.WriteLine($"rank {rank}: {what}");
    return 1;
}
