using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

/// <summary>A CUDA driver API call returned something other than <see cref="CUresult.CUDA_SUCCESS"/>.</summary>
public class CudaException : Exception
{
    /// <summary>Creates the exception; the message is <c>"{api} failed: {errorName} ({code}): {errorString}"</c>.</summary>
    public CudaException(string apiName, CUresult result, string errorName, string errorString)
        : base($"{apiName} failed: {errorName} ({(int)result}): {errorString}")
    {
        ApiName = apiName;
        Result = result;
        ErrorName = errorName;
        ErrorString = errorString;
    }

    /// <summary>The driver function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string ApiName { get; }

    /// <summary>The status the driver returned.</summary>
    public CUresult Result { get; }

    /// <summary>The symbolic name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The driver's description of the error.</summary>
    public string ErrorString { get; }

    /// <summary>
    /// Throws a <see cref="CudaException"/> when <paramref name="r"/> is not <see cref="CUresult.CUDA_SUCCESS"/>.
    /// Call it around the native call: <c>CudaException.Check(Cuda.cuMemAlloc_v2(out p, n));</c>.
    /// </summary>
    /// <param name="r">The result of the call.</param>
    /// <param name="expr">Filled in by the compiler; the API name is taken from it.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(CUresult r, [CallerArgumentExpression(nameof(r))] string expr = "")
    {
        // One compare inlined at every call site; everything else lives in the cold method so
        // that the check costs nothing measurable next to a driver call.
        if (r != CUresult.CUDA_SUCCESS)
            Throw(r, expr);
    }

    /// <summary>Builds the exception for <paramref name="r"/>, asking the driver for the error's name and text.</summary>
    public static CudaException Create(CUresult r, string apiName)
    {
        string name = r.ToString();
        string text = "(no description available)";
        try
        {
            unsafe
            {
                byte* p;
                if (Cuda.cuGetErrorName(r, &p) == CUresult.CUDA_SUCCESS && p != null)
                    name = Marshal.PtrToStringUTF8((nint)p) ?? name;
                if (Cuda.cuGetErrorString(r, &p) == CUresult.CUDA_SUCCESS && p != null)
                    text = Marshal.PtrToStringUTF8((nint)p) ?? text;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // The error happened without a usable driver (e.g. a fake result in a test):
            // the enum name is still meaningful.
        }
        return new CudaException(apiName, r, name, text);
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(CUresult r, string expr) => throw Create(r, ApiNames.FromExpression(expr, "CUDA call"));
}

/// <summary>An NVRTC call failed; for compile errors the whole compile log is in <see cref="Log"/> and the message.</summary>
public class NvrtcException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NvrtcException(string apiName, NvrtcResult result, string errorString,
        string? log = null, string? fileName = null, string[]? options = null)
        : base(BuildMessage(apiName, result, errorString, log, fileName, options))
    {
        ApiName = apiName;
        Result = result;
        ErrorString = errorString;
        Log = log;
        FileName = fileName;
        Options = options;
    }

    /// <summary>The NVRTC function that failed.</summary>
    public string ApiName { get; }

    /// <summary>The status NVRTC returned.</summary>
    public NvrtcResult Result { get; }

    /// <summary>NVRTC's description of <see cref="Result"/> (<c>nvrtcGetErrorString</c>).</summary>
    public string ErrorString { get; }

    /// <summary>The program log, when the failure was a compile.</summary>
    public string? Log { get; }

    /// <summary>The program's file name, as given to <c>nvrtcCreateProgram</c>.</summary>
    public string? FileName { get; }

    /// <summary>The compile options used.</summary>
    public string[]? Options { get; }

    /// <summary>Throws an <see cref="NvrtcException"/> when <paramref name="r"/> is not <see cref="NvrtcResult.NVRTC_SUCCESS"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(NvrtcResult r, [CallerArgumentExpression(nameof(r))] string expr = "")
    {
        if (r != NvrtcResult.NVRTC_SUCCESS)
            Throw(r, expr);
    }

    /// <summary>NVRTC's description of <paramref name="r"/>, or the enum name when NVRTC cannot be asked.</summary>
    public static string Describe(NvrtcResult r)
    {
        try
        {
            unsafe
            {
                byte* p = Nvrtc.nvrtcGetErrorString(r);
                if (p != null)
                    return Marshal.PtrToStringUTF8((nint)p) ?? r.ToString();
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return r.ToString();
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(NvrtcResult r, string expr)
        => throw new NvrtcException(ApiNames.FromExpression(expr, "NVRTC call"), r, Describe(r));

    private static string BuildMessage(string api, NvrtcResult r, string text, string? log, string? file, string[]? options)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(api).Append(" failed: ").Append(r).Append(" (").Append((int)r).Append(')');
        // nvrtcGetErrorString returns the symbolic name itself; do not print it twice.
        if (text != r.ToString())
            sb.Append(": ").Append(text);
        if (file is not null)
            sb.Append("\n  file: ").Append(file);
        if (options is not null)
            sb.Append("\n  options: ").Append(options.Length == 0 ? "(none)" : string.Join(' ', options));
        if (!string.IsNullOrWhiteSpace(log))
            sb.Append("\n--- NVRTC log ---\n").Append(log.TrimEnd()).Append("\n--- end of log ---");
        return sb.ToString();
    }
}

/// <summary>A cuBLAS call returned something other than <see cref="CublasStatus.CUBLAS_STATUS_SUCCESS"/>.</summary>
public class CublasException : Exception
{
    /// <summary>Creates the exception; the message is <c>"{api} failed: {statusName} ({code}): {statusString}"</c>.</summary>
    public CublasException(string apiName, CublasStatus status, string statusName, string statusString)
        : base($"{apiName} failed: {statusName} ({(int)status}): {statusString}")
    {
        ApiName = apiName;
        Status = status;
        StatusName = statusName;
        StatusString = statusString;
    }

    /// <summary>The cuBLAS function that failed.</summary>
    public string ApiName { get; }

    /// <summary>The status cuBLAS returned.</summary>
    public CublasStatus Status { get; }

    /// <summary>The symbolic name, e.g. <c>CUBLAS_STATUS_NOT_SUPPORTED</c>.</summary>
    public string StatusName { get; }

    /// <summary>cuBLAS's description of the status.</summary>
    public string StatusString { get; }

    /// <summary>Throws a <see cref="CublasException"/> when <paramref name="s"/> is not success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(CublasStatus s, [CallerArgumentExpression(nameof(s))] string expr = "")
    {
        if (s != CublasStatus.CUBLAS_STATUS_SUCCESS)
            Throw(s, expr);
    }

    /// <summary>Builds the exception, asking cuBLAS for the status name and text where it can (11.4+).</summary>
    public static CublasException Create(CublasStatus s, string apiName)
    {
        string name = s.ToString();
        string text = "(no description available)";
        try
        {
            unsafe
            {
                byte* p = Cublas.cublasGetStatusName(s);
                if (p != null)
                    name = Marshal.PtrToStringUTF8((nint)p) ?? name;
                p = Cublas.cublasGetStatusString(s);
                if (p != null)
                    text = Marshal.PtrToStringUTF8((nint)p) ?? text;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // cublasGetStatusName/String appeared in cuBLAS 11.4; older builds lack them.
        }
        return new CublasException(apiName, s, name, text);
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(CublasStatus s, string expr) => throw Create(s, ApiNames.FromExpression(expr, "cuBLAS call"));
}

internal static class ApiNames
{
    /// <summary>
    /// "Cuda.cuMemAlloc_v2(out p, n)" → "cuMemAlloc_v2": the text up to '(' with any
    /// qualifier dropped, so messages name the native function as NVIDIA documents it.
    /// </summary>
    internal static string FromExpression(string expr, string fallback)
    {
        if (string.IsNullOrWhiteSpace(expr))
            return fallback;
        ReadOnlySpan<char> s = expr.AsSpan().Trim();
        int paren = s.IndexOf('(');
        if (paren < 0)
            return fallback; // a variable or constant, not a call: its text names no API
        s = s[..paren].TrimEnd();
        int dot = s.LastIndexOf('.');
        if (dot >= 0 && dot < s.Length - 1)
            s = s[(dot + 1)..];
        return s.IsEmpty ? fallback : s.ToString();
    }
}
