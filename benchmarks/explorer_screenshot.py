"""A screenshot of the browser explorer on a trained run (for the README).

    python benchmarks/explorer_screenshot.py RUN_DIR docs/figures/explorer.png [--slider Smiling=2.5]

Needs Chromium and chromedriver (apt install chromium chromium-driver) and the serve extra.
"""
import argparse
import socket
import threading
import time

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gankit.serve.app import Explorer, build_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--slider", action="append", default=["Smiling=2.5"], help="NAME=VALUE to set before the shot")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    explorer = Explorer(args.run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(build_app(explorer), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,820"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 120)
    try:
        driver.get(f"http://127.0.0.1:{port}")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        seed = driver.find_element(By.ID, "seed")
        seed.clear()
        seed.send_keys(str(args.seed))
        driver.find_element(By.ID, "sample").click()
        time.sleep(1)
        for item in args.slider:
            name, value = item.split("=")
            el = driver.find_element(By.ID, f"slider-{name}")
            driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                                  el, value)
        driver.find_element(By.ID, "interpolate").click()
        wait.until(lambda d: (d.find_element(By.ID, "strip").get_attribute("src") or "").startswith("data:")
                   and d.find_element(By.TAG_NAME, "body").get_attribute("data-busy") == "0")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
        srv.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
