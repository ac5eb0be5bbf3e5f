import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
import hello_world  # noqa: E402


class HelloWorldTest(unittest.TestCase):
    def test_health(self):
        self.assertEqual(hello_world.answer("/health"), (200, "healthy\n"))

    def test_hello_names_the_version(self):
        status, body = hello_world.answer("/")
        self.assertEqual(status, 200)
        self.assertRegex(body, r"Menteebot \d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
