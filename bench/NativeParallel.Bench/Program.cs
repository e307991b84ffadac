using BenchmarkDotNet.Running;

// BenchmarkDotNet suites of the CPU device's hot paths. Run: ./build.sh bench [--filter '*Gemm*'].
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
