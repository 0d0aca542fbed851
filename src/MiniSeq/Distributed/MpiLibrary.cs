// The system's MPI library, found and bound at run time: nothing MPI is needed to build MiniSeq, and nothing is loaded
// unless a run asks for it. Open MPI is the supported ABI: its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are the
// addresses of exported globals (`ompi_mpi_comm_world`, …), which NativeLibrary.GetExport returns as they are.
// MPICH and the libraries sharing its ABI (Intel MPI, MVAPICH, Cray MPICH) use 32-bit integer constants instead: they
// are recognised and refused in one line that names them, as is a missing library (with the apt-get line to fix it).
// Deliberately not: MPICH's ABI, the MPI-5 standard ABI (libmpi_abi.so; not in Debian 12), Fortran or C++ bindings.
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace MiniSeq.Distributed;

/// <summary>MPI is missing, of an unsupported ABI, or failed.</summary>
public sealed class MpiException(string message) : InvalidOperationException(message);

/// <summary>Open MPI's entry points and predefined handles, from a library loaded with dlopen(RTLD_GLOBAL).</summary>
internal sealed unsafe partial class MpiLibrary
{
    /// <summary>Environment variable naming the MPI library to load instead of the search below.</summary>
    public const string LibraryVariable = "MINISEQ_MPI_LIBRARY";

    /// <summary>How to install the supported MPI on Debian and Ubuntu.</summary>
    public const string InstallHint = "apt-get install openmpi-bin libopenmpi-dev";

    /// <summary>Searched in order: Open MPI's soname first, then MPICH's (to name it if it is all there is).</summary>
    public static IReadOnlyList<string> SearchNames { get; } = ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"];

    // Open MPI's MPI_IN_PLACE is ((void *) 1) (mpi.h).
    public static readonly void* InPlace = (void*)1;

    public readonly delegate* unmanaged<int*, byte***, int, int*, int> InitThread;
    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, int> Finalized;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<nint, int, int> Abort;
    public readonly delegate* unmanaged<nint, int*, int> CommRank;
    public readonly delegate* unmanaged<nint, int*, int> CommSize;
    public readonly delegate* unmanaged<nint, int> Barrier;
    public readonly delegate* unmanaged<nint, int, int, nint*, int> CommSplit;
    public readonly delegate* unmanaged<nint*, int> CommFree;
    public readonly delegate* unmanaged<void*, int, nint, int, nint, int> Bcast;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> ReduceScatterBlock;
    public readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> Allgather;
    public readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> Alltoall;
    public readonly delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, int> Alltoallv;

    public readonly nint CommWorld, Float, Double, Int, Long, Byte, OpSum, OpMax, OpMin;

    private MpiLibrary(nint handle, string path, string version)
    {
        Path = path;
        Version = version;
        InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export(handle, "MPI_Init_thread");
        Initialized = (delegate* unmanaged<int*, int>)Export(handle, "MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Export(handle, "MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Export(handle, "MPI_Finalize");
        Abort = (delegate* unmanaged<nint, int, int>)Export(handle, "MPI_Abort");
        CommRank = (delegate* unmanaged<nint, int*, int>)Export(handle, "MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Export(handle, "MPI_Comm_size");
        Barrier = (delegate* unmanaged<nint, int>)Export(handle, "MPI_Barrier");
        CommSplit = (delegate* unmanaged<nint, int, int, nint*, int>)Export(handle, "MPI_Comm_split");
        CommFree = (delegate* unmanaged<nint*, int>)Export(handle, "MPI_Comm_free");
        Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export(handle, "MPI_Bcast");
        Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export(handle, "MPI_Allreduce");
        ReduceScatterBlock = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export(handle, "MPI_Reduce_scatter_block");
        Allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Export(handle, "MPI_Allgather");
        Alltoall = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Export(handle, "MPI_Alltoall");
        Alltoallv = (delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, int>)Export(handle, "MPI_Alltoallv");

        // MPI_COMM_WORLD = ((MPI_Comm) &ompi_mpi_comm_world), and so on: the export's address is the handle.
        CommWorld = Export(handle, "ompi_mpi_comm_world");
        Float = Export(handle, "ompi_mpi_float");
        Double = Export(handle, "ompi_mpi_double");
        Int = Export(handle, "ompi_mpi_int");
        Long = Export(handle, "ompi_mpi_int64_t");
        Byte = Export(handle, "ompi_mpi_byte");
        OpSum = Export(handle, "ompi_mpi_op_sum");
        OpMax = Export(handle, "ompi_mpi_op_max");
        OpMin = Export(handle, "ompi_mpi_op_min");
    }

    /// <summary>The file loaded (as given to dlopen).</summary>
    public string Path { get; }

    /// <summary>The first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4, package: Debian OpenMPI, …".</summary>
    public string Version { get; }

    /// <summary>"Open MPI 4.1" (major.minor), or the version line if it does not parse.</summary>
    public string ShortName => ShortNameOf(Version);

    /// <summary>"Open MPI 4.1" from "Open MPI v4.1.4, package: …"; other text is returned as it is.</summary>
    public static string ShortNameOf(string version)
    {
        ArgumentNullException.ThrowIfNull(version);
        Match m = VersionPattern().Match(version);
        return m.Success ? $"Open MPI {m.Groups[1].Value}.{m.Groups[2].Value}" : version;
    }

    [GeneratedRegex(@"Open MPI v?(\d+)\.(\d+)")]
    private static partial Regex VersionPattern();

    /// <summary>
    /// Loads the MPI library named by <see cref="LibraryVariable"/>, or else the first of <see cref="SearchNames"/>
    /// that loads, and binds Open MPI's ABI. Throws <see cref="MpiException"/> with one line naming what was found
    /// (nothing, MPICH or another MPI, a library that is not MPI) and what to do.
    /// </summary>
    public static MpiLibrary Load()
    {
        string? forced = Environment.GetEnvironmentVariable(LibraryVariable);
        IReadOnlyList<string> names = string.IsNullOrEmpty(forced) ? SearchNames : [forced];
        var failures = new List<string>();
        foreach (string name in names)
        {
            nint handle = Open(name, out string? error);
            if (handle == 0)
            {
                failures.Add(error ?? name);
                continue;
            }

            string version = LibraryVersion(handle);
            if (NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
            {
                return new MpiLibrary(handle, name, version);
            }

            if (NativeLibrary.TryGetExport(handle, "MPI_Init", out _))
            {
                throw new MpiException($"found {Describe(version, "an MPI")} in {name}, which has MPICH's ABI (MPICH, Intel MPI, MVAPICH); MiniSeq supports Open MPI only: {InstallHint}, and launch with Open MPI's mpirun.");
            }

            throw new MpiException($"{name} is not an MPI library (it has no MPI_Init){(forced is null ? "" : $" — unset {LibraryVariable} or point it at Open MPI's libmpi.so.40")}.");
        }

        throw new MpiException(forced is null
            ? $"no MPI library found (tried {string.Join(", ", names)}): install Open MPI with {InstallHint}."
            : $"{LibraryVariable}={forced} cannot be loaded ({failures[0]}): install Open MPI with {InstallHint} and unset {LibraryVariable}.");
    }

    private static string Describe(string version, string fallback) => version.Length > 0 ? version : fallback;

    /// <summary>dlopen(RTLD_NOW | RTLD_GLOBAL): Open MPI's plugins (mca_*.so) resolve libmpi's symbols globally, so
    /// the RTLD_LOCAL of NativeLibrary.Load would leave some of them unable to load. dlopen and dlerror are bound as
    /// function pointers up front: resolving a P/Invoke between the two calls would clear dlerror's message.</summary>
    private static nint Open(string name, out string? error)
    {
        const int RtldNow = 2, RtldGlobal = 0x100;
        error = null;
        if (!TryExport(["libc.so.6", "libdl.so.2"], "dlopen", out nint dlopen) || !TryExport(["libc.so.6", "libdl.so.2"], "dlerror", out nint dlerror))
        {
            return NativeLibrary.TryLoad(name, out nint fallback) ? fallback : 0;
        }

        byte[] path = Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* p = path)
        {
            nint handle = ((delegate* unmanaged<byte*, int, nint>)dlopen)(p, RtldNow | RtldGlobal);
            if (handle == 0)
            {
                error = Marshal.PtrToStringUTF8(((delegate* unmanaged<nint>)dlerror)());
            }

            return handle;
        }
    }

    private static bool TryExport(string[] libraries, string symbol, out nint address)
    {
        foreach (string library in libraries)
        {
            if (NativeLibrary.TryLoad(library, out nint handle) && NativeLibrary.TryGetExport(handle, symbol, out address))
            {
                return true;
            }
        }

        address = 0;
        return false;
    }

    /// <summary>MPI_Get_library_version (callable before MPI_Init): its first line, or "" if the library lacks it.</summary>
    private static string LibraryVersion(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "MPI_Get_library_version", out nint address))
        {
            return "";
        }

        // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI and 8192 in MPICH.
        byte[] buffer = new byte[8192];
        int length = 0;
        fixed (byte* p = buffer)
        {
            if (((delegate* unmanaged<byte*, int*, int>)address)(p, &length) != 0)
            {
                return "";
            }
        }

        string text = Encoding.UTF8.GetString(buffer, 0, Math.Clamp(length, 0, buffer.Length)).TrimEnd('\0');
        string first = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        return Regex.Replace(first, @"\s+", " ");
    }

    private static nint Export(nint handle, string name)
        => NativeLibrary.TryGetExport(handle, name, out nint address) ? address
            : throw new MpiException($"the MPI library lacks {name}: Open MPI ≥ 4.0 is needed ({InstallHint}).");
}
