@echo off
rem LoRA Factory launcher (Windows).
rem Runs the set-up when needed (no .venv, or the marker of a completed set-up is missing), starts the
rem server on 127.0.0.1 and opens the browser once it answers. Port: LORA_FACTORY_PORT (default 8081).
rem Extra arguments are passed to "lora-factory serve".
setlocal
chcp 65001 >nul
cd /d "%~dp0"
if "%LORA_FACTORY_PORT%"=="" set "LORA_FACTORY_PORT=8081"

set "NEED_SETUP="
if not exist ".venv\Scripts\python.exe" set "NEED_SETUP=1"
if not exist ".venv\lora_factory_setup_ok" set "NEED_SETUP=1"
if not defined NEED_SETUP goto start

echo 初回セットアップを実行します / running the set-up first (setup.py --no-start)
set "PYLAUNCH="
where py >nul 2>nul
if not errorlevel 1 set "PYLAUNCH=py -3"
if not defined PYLAUNCH (
    where python >nul 2>nul
    if not errorlevel 1 set "PYLAUNCH=python"
)
if not defined PYLAUNCH (
    echo Python 3.10 以上が見つかりません。https://www.python.org/downloads/ からインストールしてください。
    echo Python 3.10 or newer was not found; install it from https://www.python.org/downloads/
    pause
    exit /b 1
)
%PYLAUNCH% setup.py --no-start
if errorlevel 1 (
    echo セットアップに失敗しました。logs\setup_*.log を確認してください。
    echo The set-up failed; see logs\setup_*.log
    pause
    exit /b 1
)

:start
rem Wait for the server in the background, then open the browser; no browser is not an error.
start "" /b cmd /c ".venv\Scripts\python.exe setup.py --wait-for-server >nul 2>nul && if not defined LORA_FACTORY_NO_BROWSER start "" http://127.0.0.1:%LORA_FACTORY_PORT%"
echo LoRA Factory: http://127.0.0.1:%LORA_FACTORY_PORT%  (Ctrl+C で停止 / to stop)
".venv\Scripts\lora-factory.exe" serve --host 127.0.0.1 --port %LORA_FACTORY_PORT% %*
set "STATUS=%ERRORLEVEL%"
endlocal & exit /b %STATUS%
