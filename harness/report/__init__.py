"""Reports: per-test results (collector), the interop matrix and detail pages (matrix), Allure metadata."""
