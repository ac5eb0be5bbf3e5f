import sys
import pathlib
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "app"))
import main  # noqa: E402


class ApiTest(unittest.TestCase):
    def test_health(self):
        self.assertEqual(main.answer("/health"), (200, "ok\n"))

    def test_version(self):
        status, body = main.answer("/")
        self.assertEqual(status, 200)
        self.assertIn("codecraft-ai", body)


if __name__ == "__main__":
    unittest.main()
