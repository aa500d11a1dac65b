"""Build of the optional C extension ``model_diff.kernel`` (everything else is in pyproject.toml).

The extension is optional: where no C compiler is available the install still succeeds and
``model_diff.metrics`` uses its numpy step (``model-diff --version`` shows which is active).
It needs only Python's headers: buffers come through the buffer protocol, not numpy's C API.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """Adds optimisation flags where the compiler understands GCC-style options."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = ["-O3", "-fno-math-errno", "-std=c99"]
        super().build_extensions()


setup(
    ext_modules=[Extension("model_diff.kernel", ["model_diff/kernel.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
