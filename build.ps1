# NativeParallel build entry point for Windows; mirrors build.sh. Verbs: run, test, cli, bench, publish.
param([Parameter(Position = 0)][string]$Verb = "help", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = "1"; $env:DOTNET_NOLOGO = "1"
$Config = if ($env:CONFIG) { $env:CONFIG } else { "Release" }
$Cli = "src/NativeParallel.Cli/NativeParallel.Cli.csproj"
$Tests = "tests/NativeParallel.Tests/NativeParallel.Tests.csproj"
if (-not $Rest) { $Rest = @() }

function Invoke-Cli([string[]]$CliArgs) {
    dotnet build $Cli -c $Config -v q -nologo -clp:ErrorsOnly
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    dotnet "src/NativeParallel.Cli/bin/$Config/net10.0/NativeParallel.Cli.dll" @CliArgs
    exit $LASTEXITCODE
}

switch ($Verb) {
    "run" { Invoke-Cli (@("run") + $Rest) }
    "cli" { Invoke-Cli $Rest }
    "test" {
        $log = dotnet test --project $Tests -c $Config --no-progress --output Detailed 2>&1 | Tee-Object -Variable lines
        $code = $LASTEXITCODE
        $get = { param($k) ($lines | Select-String "^\s*${k}:\s*(\d+)" | Select-Object -Last 1).Matches.Groups[1].Value }
        Write-Output ("{0} passed, {1} failed, {2} skipped" -f (& $get "succeeded"), (& $get "failed"), (& $get "skipped"))
        exit $code
    }
    "bench" { dotnet run --project bench/NativeParallel.Bench/NativeParallel.Bench.csproj -c Release -- @Rest; exit $LASTEXITCODE }
    "publish" {
        $rid = if ($Rest.Count -gt 0) { $Rest[0] } else { "win-x64" }
        dotnet publish $Cli -c Release -r $rid --self-contained true -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:DebugType=none -o "out/nativeparallel-$rid"
        exit $LASTEXITCODE
    }
    default { Write-Output "usage: ./build.ps1 run|test|cli ARGS|bench|publish [RID]"; exit ($(if ($Verb -eq "help") { 0 } else { 2 })) }
}
