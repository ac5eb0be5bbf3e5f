import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
import main  # noqa: E402


class MainTest(unittest.TestCase):
    def test_health(self):
        self.assertEqual(main.answer("/health"), (200, "ok\n"))

    def test_version(self):
        self.assertEqual(main.answer("/"), (200, f"code {main.VERSION}\n"))


if __name__ == "__main__":
    unittest.main()
