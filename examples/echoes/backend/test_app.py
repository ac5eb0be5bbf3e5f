import unittest

import app


class AppTest(unittest.TestCase):
    def test_health(self):
        status, body = app.answer("/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")


if __name__ == "__main__":
    unittest.main()
