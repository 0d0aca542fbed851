// Native odds and ends: the ELF patch of the build-output copy of libLibTorchSharp.so, ATen's build/config strings
// (the C++ behind Python's torch.__config__, which TorchSharp does not expose), peak RSS and CPU facts from /proc.
using System.Runtime.InteropServices;

namespace MiniSeq.LibTorchBench;

internal static unsafe class Native
{
    private const string NeededVersion = "GLIBCXX_3.4.32";

    /// <summary>Patches every libLibTorchSharp.so under this program's directory (the build-output copy) in place.</summary>
    public static string PatchOutputCopy()
    {
        string baseDir = AppContext.BaseDirectory;
        var lines = new List<string>();
        foreach (string path in Directory.EnumerateFiles(baseDir, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            if (path.Contains("/.nuget/", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"refusing to patch {path}: it looks like the NuGet cache");
            }

            ElfPatch.Outcome r = ElfPatch.MarkVersionWeak(path, NeededVersion);
            lines.Add($"{path}: {NeededVersion} {r switch { ElfPatch.Outcome.Patched => "flagged weak (patched now)", ElfPatch.Outcome.AlreadyWeak => "already weak", _ => "not needed" }}");
        }

        return lines.Count == 0 ? $"no libLibTorchSharp.so under {baseDir}" : string.Join('\n', lines);
    }

    /// <summary>Calls an ATen function <c>std::string f()</c> (C++11 ABI; returned through the hidden pointer in rdi).</summary>
    public static string? AtenString(string mangled)
    {
        IntPtr lib = FindTorchCpu();
        if (lib == IntPtr.Zero || !NativeLibrary.TryGetExport(lib, mangled, out IntPtr fn))
        {
            return null;
        }

        // std::__cxx11::basic_string: { char* data; size_t length; union { char local[16]; size_t capacity; } }
        byte* ret = stackalloc byte[32];
        ((delegate* unmanaged<byte*, void>)fn)(ret);
        var data = *(sbyte**)ret;
        long length = *(long*)(ret + 8);
        return new string(data, 0, (int)length, System.Text.Encoding.UTF8);
        // (the string's heap buffer, if any, is leaked: a few KiB once per process)
    }

    private static IntPtr FindTorchCpu()
    {
        foreach (string path in Directory.EnumerateFiles(AppContext.BaseDirectory, "libtorch_cpu.so", SearchOption.AllDirectories))
        {
            if (NativeLibrary.TryLoad(path, out IntPtr h))
            {
                return h;
            }
        }

        return IntPtr.Zero;
    }

    public static string? ShowConfig() => AtenString("_ZN2at11show_configB5cxx11Ev");

    public static string? ParallelInfo() => AtenString("_ZN2at17get_parallel_infoB5cxx11Ev");

    public static string? CpuCapability() => AtenString("_ZN2at18get_cpu_capabilityB5cxx11Ev");

    public static string? MklVersion() => AtenString("_ZN2at15get_mkl_versionB5cxx11Ev");

    public static string? MkldnnVersion() => AtenString("_ZN2at18get_mkldnn_versionB5cxx11Ev");

    /// <summary>Process peak RSS (VmHWM of /proc/self/status), bytes.</summary>
    public static long PeakRssBytes() => StatusKiB("VmHWM:") * 1024;

    /// <summary>Current RSS, bytes.</summary>
    public static long RssBytes() => StatusKiB("VmRSS:") * 1024;

    private static long StatusKiB(string key)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return -1;
    }

    /// <summary>"family F, model M" of /proc/cpuinfo (family 25 = Zen 3/4, 26 = Zen 5 on AMD).</summary>
    public static string CpuFamilyModel()
    {
        string? family = null, model = null;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            string key = line.Split(':')[0].Trim();
            string value = line.Contains(':', StringComparison.Ordinal) ? line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim() : "";
            family ??= key == "cpu family" ? value : null;
            model ??= key == "model" ? value : null;
            if (family is not null && model is not null)
            {
                break;
            }
        }

        return $"family {family ?? "?"}, model {model ?? "?"}";
    }

    /// <summary>The ISA-relevant flags of /proc/cpuinfo that are present.</summary>
    public static string[] IsaFlags()
    {
        string[] interesting = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"];
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            if (line.StartsWith("flags", StringComparison.Ordinal))
            {
                var flags = line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
                return interesting.Where(flags.Contains).ToArray();
            }
        }

        return [];
    }
}
