using System.Runtime.InteropServices;
using System.Text;

namespace NativeParallel.Interop;

/// <summary>
/// A safe wrapper around one NVRTC program: create from source, compile, read PTX/CUBIN and
/// the log. Not thread-safe; use one instance per thread (NVRTC compiles distinct programs
/// concurrently without trouble).
/// </summary>
/// <example>
/// <code>
/// using var p = new NvrtcProgram(src, "kernels.cu");
/// p.CompileOrThrow(["--gpu-architecture=sm_80", "-std=c++17"]);
/// byte[] cubin = p.GetCubin();
/// </code>
/// </example>
public sealed unsafe class NvrtcProgram : IDisposable
{
    private nint _prog;
    private readonly string _fileName;

    /// <summary>Creates a program from <paramref name="source"/>.</summary>
    /// <param name="source">CUDA C++ source.</param>
    /// <param name="fileName">Name used in diagnostics (and for <c>#include</c> lookups relative to it).</param>
    /// <param name="headers">Optional in-memory headers: include name → contents.</param>
    /// <exception cref="NvrtcException">NVRTC refused to create the program.</exception>
    /// <exception cref="NativeLibraryNotFoundException">NVRTC could not be loaded.</exception>
    public NvrtcProgram(string source, string fileName, IReadOnlyDictionary<string, string>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(fileName);
        _fileName = fileName;

        int n = headers?.Count ?? 0;
        // One native block per string keeps this simple; creation is a cold path next to the compile.
        var allocations = new List<nint>(2 + 2 * n);
        try
        {
            byte* src = Utf8(source, allocations);
            byte* name = Utf8(fileName, allocations);
            byte** contents = stackalloc byte*[Math.Max(n, 1)];
            byte** includeNames = stackalloc byte*[Math.Max(n, 1)];
            if (headers is not null)
            {
                int i = 0;
                foreach (var (include, text) in headers)
                {
                    includeNames[i] = Utf8(include, allocations);
                    contents[i] = Utf8(text, allocations);
                    i++;
                }
            }

            NvrtcResult r = Nvrtc.nvrtcCreateProgram(out _prog, src, name, n,
                n == 0 ? null : contents, n == 0 ? null : includeNames);
            if (r != NvrtcResult.NVRTC_SUCCESS)
                throw new NvrtcException("nvrtcCreateProgram", r, NvrtcException.Describe(r), fileName: fileName);
        }
        finally
        {
            foreach (nint p in allocations)
                NativeMemory.Free((void*)p);
        }
    }

    /// <summary>Releases the program if <see cref="Dispose"/> was not called.</summary>
    ~NvrtcProgram() => Destroy();

    /// <summary>The file name given at creation.</summary>
    public string FileName => _fileName;

    /// <summary>The log of the last <see cref="Compile"/> (warnings, errors, <c>ptxas -v</c> output); empty before.</summary>
    public string Log { get; private set; } = "";

    /// <summary>The status of the last <see cref="Compile"/>; <see langword="null"/> before.</summary>
    public NvrtcResult? LastResult { get; private set; }

    /// <summary>The options of the last <see cref="Compile"/>.</summary>
    public IReadOnlyList<string> LastOptions { get; private set; } = [];

    /// <summary>NVRTC's version, e.g. (12, 4).</summary>
    /// <exception cref="NativeLibraryNotFoundException">NVRTC could not be loaded.</exception>
    public static (int Major, int Minor) Version
    {
        get
        {
            NvrtcException.Check(Nvrtc.nvrtcVersion(out int major, out int minor));
            return (major, minor);
        }
    }

    /// <summary>The real architectures (<c>sm_XX</c> as XX) this NVRTC can generate code for, ascending.</summary>
    public static int[] SupportedArchs()
    {
        NvrtcException.Check(Nvrtc.nvrtcGetNumSupportedArchs(out int count));
        var archs = new int[count];
        if (count > 0)
        {
            fixed (int* p = archs)
                NvrtcException.Check(Nvrtc.nvrtcGetSupportedArchs(p));
        }
        return archs;
    }

    /// <summary>
    /// Registers a name expression (e.g. <c>"&amp;scale&lt;float&gt;"</c>) so that
    /// <see cref="GetLoweredName"/> can return its mangled name after compiling. Call before <see cref="Compile"/>.
    /// </summary>
    public void AddNameExpression(string nameExpression)
    {
        ArgumentNullException.ThrowIfNull(nameExpression);
        nint prog = Handle;
        var allocations = new List<nint>(1);
        try
        {
            NvrtcException.Check(Nvrtc.nvrtcAddNameExpression(prog, Utf8(nameExpression, allocations)));
        }
        finally
        {
            foreach (nint p in allocations)
                NativeMemory.Free((void*)p);
        }
    }

    /// <summary>The mangled (lowered) name of a registered name expression, for <c>cuModuleGetFunction</c>.</summary>
    public string GetLoweredName(string nameExpression)
    {
        ArgumentNullException.ThrowIfNull(nameExpression);
        nint prog = Handle;
        var allocations = new List<nint>(1);
        try
        {
            byte* lowered;
            NvrtcException.Check(Nvrtc.nvrtcGetLoweredName(prog, Utf8(nameExpression, allocations), &lowered));
            return Marshal.PtrToStringUTF8((nint)lowered) ?? "";
        }
        finally
        {
            foreach (nint p in allocations)
                NativeMemory.Free((void*)p);
        }
    }

    /// <summary>
    /// Compiles with <paramref name="options"/> (e.g. <c>--gpu-architecture=sm_80</c>,
    /// <c>-std=c++17</c>, <c>--ptxas-options=-v</c>). Always fills <see cref="Log"/>.
    /// </summary>
    /// <returns><see langword="true"/> on success; <see langword="false"/> when NVRTC reported an error (see <see cref="Log"/> and <see cref="LastResult"/>).</returns>
    public bool Compile(IReadOnlyList<string> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        nint prog = Handle;
        int n = options.Count;
        var allocations = new List<nint>(n);
        NvrtcResult r;
        try
        {
            byte** opts = stackalloc byte*[Math.Max(n, 1)];
            for (int i = 0; i < n; i++)
                opts[i] = Utf8(options[i], allocations);
            r = Nvrtc.nvrtcCompileProgram(prog, n, n == 0 ? null : opts);
        }
        finally
        {
            foreach (nint p in allocations)
                NativeMemory.Free((void*)p);
        }

        LastResult = r;
        LastOptions = [.. options];
        Log = ReadLog(prog);
        return r == NvrtcResult.NVRTC_SUCCESS;
    }

    /// <summary>As <see cref="Compile"/>, but throws on failure.</summary>
    /// <exception cref="NvrtcException">The compile failed; the exception carries the whole log, the file name and the options.</exception>
    public void CompileOrThrow(IReadOnlyList<string> options)
    {
        if (!Compile(options))
        {
            NvrtcResult r = LastResult!.Value;
            throw new NvrtcException("nvrtcCompileProgram", r, NvrtcException.Describe(r), Log, _fileName, [.. options]);
        }
    }

    /// <summary>The generated PTX (without the terminating NUL). Valid after a successful compile.</summary>
    public string GetPtx()
    {
        nint prog = Handle;
        NvrtcException.Check(Nvrtc.nvrtcGetPTXSize(prog, out nuint size));
        if (size <= 1)
            return "";
        byte[] buffer = new byte[checked((int)size)];
        fixed (byte* p = buffer)
            NvrtcException.Check(Nvrtc.nvrtcGetPTX(prog, p));
        return DecodeCString(buffer);
    }

    /// <summary>
    /// The generated CUBIN. Empty when the program was compiled for a virtual architecture
    /// (<c>compute_XX</c>), which produces PTX only. Valid after a successful compile.
    /// </summary>
    public byte[] GetCubin()
    {
        nint prog = Handle;
        NvrtcException.Check(Nvrtc.nvrtcGetCUBINSize(prog, out nuint size));
        if (size == 0)
            return [];
        byte[] buffer = new byte[checked((int)size)];
        fixed (byte* p = buffer)
            NvrtcException.Check(Nvrtc.nvrtcGetCUBIN(prog, p));
        return buffer;
    }

    /// <summary>Destroys the NVRTC program.</summary>
    public void Dispose()
    {
        Destroy();
        GC.SuppressFinalize(this);
    }

    private nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_prog == 0, this);
            return _prog;
        }
    }

    private void Destroy()
    {
        if (_prog != 0)
        {
            // Ignore the status: there is nothing useful to do with a failed destroy, and this
            // may run on the finalizer thread.
            Nvrtc.nvrtcDestroyProgram(ref _prog);
            _prog = 0;
        }
    }

    private static string ReadLog(nint prog)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(prog, out nuint size) != NvrtcResult.NVRTC_SUCCESS || size <= 1)
            return "";
        byte[] buffer = new byte[checked((int)size)];
        fixed (byte* p = buffer)
        {
            if (Nvrtc.nvrtcGetProgramLog(prog, p) != NvrtcResult.NVRTC_SUCCESS)
                return "";
        }
        return DecodeCString(buffer);
    }

    // NVRTC sizes include the terminating NUL, and some versions (11.8 with --ptxas-options=-v)
    // report a log size larger than the text, leaving NULs inside: stop at the first one.
    private static string DecodeCString(byte[] buffer)
    {
        int len = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, len < 0 ? buffer.Length : len);
    }

    // NUL-terminated UTF-8 copy in native memory; recorded in `allocations` so the caller frees it.
    private static byte* Utf8(string s, List<nint> allocations)
    {
        int max = Encoding.UTF8.GetMaxByteCount(s.Length) + 1;
        byte* p = (byte*)NativeMemory.Alloc((nuint)max);
        allocations.Add((nint)p);
        int written = Encoding.UTF8.GetBytes(s, new Span<byte>(p, max - 1));
        p[written] = 0;
        return p;
    }
}
