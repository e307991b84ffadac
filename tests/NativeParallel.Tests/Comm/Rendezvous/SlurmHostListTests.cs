using NativeParallel.Comm.Rendezvous;

namespace NativeParallel.Tests.Comm.Rendezvous;

/// <summary>Slurm's compressed host lists and tasks-per-node lists: the forms Slurm writes, and malformed ones failing in one line.</summary>
public sealed class SlurmHostListTests
{
    [Theory]
    [InlineData("node1", "node1")]
    [InlineData("a,b,c", "a b c")]
    [InlineData("gpu-a[01-03,07],gpu-b12", "gpu-a01 gpu-a02 gpu-a03 gpu-a07 gpu-b12")]
    [InlineData("n[8-10]", "n8 n9 n10")]
    [InlineData("n[08-10]", "n08 n09 n10")]
    [InlineData("n[098-101]", "n098 n099 n100 n101")]
    [InlineData("n[5]", "n5")]
    [InlineData("n[0-0]", "n0")]
    [InlineData("n[1,3-4]x", "n1x n3x n4x")]
    [InlineData("rack[1-2]-n[1-2]", "rack1-n1 rack1-n2 rack2-n1 rack2-n2")]
    [InlineData("a[1-2],b[09-10],c", "a1 a2 b09 b10 c")]
    [InlineData("[1-2]", "1 2")]
    [InlineData("host-1.example.com,host-2.example.com", "host-1.example.com host-2.example.com")]
    [InlineData("tux[1-2,4],tux[6]", "tux1 tux2 tux4 tux6")]
    public void ExpandsEveryForm(string list, string expected)
    {
        Assert.Equal(expected.Split(' '), SlurmHostList.Expand(list));
        Assert.Equal(expected.Split(' ')[0], SlurmHostList.First(list));
    }

    [Theory]
    [InlineData("", "is empty")]
    [InlineData("gpu[01-", "never closed")]
    [InlineData("gpu]01", "with no '['")]
    [InlineData("gpu[[1]]", "inside brackets")]
    [InlineData("gpu[]", "empty brackets")]
    [InlineData("gpu[1,,2]", "empty item")]
    [InlineData("gpu[a-b]", "expected a number")]
    [InlineData("gpu[1-2-3]", "expected a number")]
    [InlineData("gpu[-1]", "expected a number")]
    [InlineData("gpu[1-]", "expected a number")]
    [InlineData("gpu[3-1]", "backwards")]
    [InlineData("a,,b", "empty host name")]
    [InlineData(",a", "empty host name")]
    [InlineData("a,", "empty host name")]
    [InlineData("gpu [1]", "space")]
    [InlineData("n[1-99999999]", "more than")]
    [InlineData("n[1-9999],m[1-1048000]", "more than")]
    [InlineData("good,bad[2", "never closed")]
    public void MalformedListsFailInOneLineNamingTheFault(string list, string fault)
    {
        var e = Assert.Throws<FormatException>(() => SlurmHostList.Expand(list));
        Assert.Contains(fault, e.Message);
        Assert.Contains($"'{list}'", e.Message);
        Assert.Contains("expected a form like gpu-a[01-03,07],gpu-b12", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // First checks the whole list too: a fault after the first host is not ignored.
        Assert.Throws<FormatException>(() => SlurmHostList.First(list));
    }

    [Theory]
    [InlineData("4", "4")]
    [InlineData("2(x3),1", "2 2 2 1")]
    [InlineData("1(x1)", "1")]
    [InlineData("8(x2),4(x2),1", "8 8 4 4 1")]
    [InlineData("3,2,1", "3 2 1")]
    public void TasksPerNodeExpand(string list, string expected) =>
        Assert.Equal(expected.Split(' ').Select(int.Parse), SlurmTasksPerNode.Expand(list));

    [Theory]
    [InlineData("")]
    [InlineData("2(x)")]
    [InlineData("2(3)")]
    [InlineData("(x3)")]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("2(x3")]
    [InlineData("2x3")]
    [InlineData("a")]
    [InlineData("2(x0)")]
    [InlineData("2,,1")]
    [InlineData("2(x3),")]
    [InlineData("1(x2000000)")]
    public void MalformedTasksPerNodeFailInOneLine(string list)
    {
        var e = Assert.Throws<FormatException>(() => SlurmTasksPerNode.Expand(list));
        Assert.Contains("expected a form like 2(x3),1", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
