"""install.py: the CPU onnxruntime that shadows onnxruntime-gpu is removed and the GPU one restored."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("pack_install", Path(__file__).parent.parent / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)


def test_both_installed_removes_cpu_and_restores_gpu_files():
    cmds = install.repair_commands({"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.19.2"})
    assert cmds == [["uninstall", "-y", "onnxruntime"],
                    ["install", "--force-reinstall", "--no-deps", "onnxruntime-gpu==1.19.2"]]
    assert not any("torch" in " ".join(c) for c in cmds)


def test_nothing_to_do_with_one_package():
    assert install.repair_commands({"onnxruntime": "1.20.0", "onnxruntime-gpu": None}) == []
    assert install.repair_commands({"onnxruntime": None, "onnxruntime-gpu": "1.19.2"}) == []


def test_main_reports_failure(monkeypatch, capsys):
    monkeypatch.setattr(install, "_version", lambda d: "1.0")
    calls = []
    assert install.main(lambda args: calls.append(args) or 1) == 1
    assert len(calls) == 1 and "pip uninstall -y onnxruntime onnxruntime-gpu" in capsys.readouterr().out
