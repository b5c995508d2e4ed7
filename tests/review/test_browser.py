"""End to end in a real headless browser: load results, see the boxes, decide, reload, find them.

Needs the ``playwright`` Python package and Debian's ``chromium`` (installed by the CI setup);
when either is missing the test fails with a message saying what to install.
"""

from __future__ import annotations

import re

import pytest

from tests.review.browser import browser_page, chromium_path, serve

pytestmark = pytest.mark.slow


def _require_browser():
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs `pip install playwright` (no `playwright install`: it drives Debian's chromium)")
    if chromium_path() is None:
        pytest.fail("the browser test needs chromium: `apt-get update && apt-get install -y chromium` (or set NII_CHROMIUM)")


def test_review_in_browser(results_dir):
    _require_browser()
    from nii.review.app import create_app

    with serve(create_app(results_dir)) as url, browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(url + "/")
        # queue: alarm first
        page.wait_for_selector("#queue li")
        cards = page.locator("#queue li")
        assert cards.count() == 2
        assert cards.nth(0).get_attribute("data-key") == "tusk-0001"
        assert "ALARM" in cards.nth(0).inner_text()
        page.fill("#operator", "ana")
        page.dispatch_event("#operator", "change")
        cards.nth(0).click()
        # viewer: image loaded at full resolution, three boxes over it
        from playwright.sync_api import expect

        expect(page.locator("#status")).to_contain_text("400×160 px")
        # the header names the model and operating point that flagged the scan, thresholds on hover
        expect(page.locator("#scanhead .model")).to_have_text("model fake-model at FAR 1 %")
        assert "ivory 0.500" in page.locator("#scanhead .model").get_attribute("title")
        boxes = page.locator("#overlay rect.det")
        assert boxes.count() == 3
        assert page.locator("#overlay rect.det.anomaly").count() == 1
        bb = boxes.nth(0).bounding_box()
        assert bb is not None and bb["width"] > 50 and bb["height"] > 20
        # labels: drawn over every box, none covering another, a click on one selects its detection
        labels = page.evaluate("""() => {
            const svg = document.querySelector('#overlay');
            const kids = [...svg.children];
            const texts = [...svg.querySelectorAll('text')];
            const firstText = kids.findIndex((k) => k.tagName === 'text');
            const lastRect = kids.map((k) => k.tagName).lastIndexOf('g');
            const b = texts.map((t) => t.getBBox());
            let overlaps = 0;
            for (let i = 0; i < b.length; i++) for (let j = 0; j < i; j++)
                if (b[i].x < b[j].x + b[j].width && b[j].x < b[i].x + b[i].width && b[i].y < b[j].y + b[j].height && b[j].y < b[i].y + b[i].height) overlaps++;
            return {n: texts.length, overlaps, above: firstText > lastRect, indexed: texts.every((t) => t.dataset.index !== undefined)};
        }""")
        # three labels and the evidence line under the selected box
        assert labels == {"n": 4, "overlaps": 0, "above": True, "indexed": True}, labels
        # two labels at the same spot: the later one moves down until it is clear
        moved = page.evaluate("""() => {
            const svg = document.querySelector('#overlay');
            const a = svg.querySelector('text');
            const b = a.cloneNode(true);
            svg.appendChild(b);
            const y = +a.getAttribute('y');
            placeLabels();
            const ra = a.getBBox(), rb = b.getBBox();
            const clear = !(ra.x < rb.x + rb.width && rb.x < ra.x + ra.width && ra.y < rb.y + rb.height && rb.y < ra.y + ra.height);
            const res = {aStays: +a.getAttribute('y') === y, bBelow: +b.getAttribute('y') > y, clear};
            b.remove();
            return res;
        }""")
        assert moved == {"aStays": True, "bBelow": True, "clear": True}, moved
        # confirm the first with the button, reject the second with the keyboard
        page.locator("#detlist li.det").nth(0).locator("button[data-act=confirm]").click()
        page.wait_for_selector("#detlist li.det:nth-child(1) .state.confirm")
        page.locator("#detlist li.det").nth(1).locator("strong.cls").click()
        page.locator("#viewport").focus()
        page.keyboard.press("x")
        page.wait_for_selector("#detlist li.det:nth-child(2) .state.reject")
        # layer toggle by keyboard: Zeff
        page.keyboard.press("6")
        expect(page.locator("#scanimg")).to_have_attribute("src", re.compile(r"/layers/zeff\.png$"))
        expect(page.locator("#status")).to_contain_text("Zeff")
        # draw a missed box by mouse and give it a class; whole-scan verdict by keyboard
        page.keyboard.press("b")
        ib = page.locator("#scanimg").bounding_box()
        sx, sy = ib["width"] / 400, ib["height"] / 160
        page.mouse.move(ib["x"] + 20 * sx, ib["y"] + 100 * sy)
        page.mouse.down()
        page.mouse.move(ib["x"] + 50 * sx, ib["y"] + 120 * sy, steps=4)
        page.mouse.move(ib["x"] + 60 * sx, ib["y"] + 140 * sy, steps=4)
        page.mouse.up()
        page.fill("#pendinglabel", "rhino_horn")
        page.press("#pendinglabel", "Enter")
        expect(page.locator("#missedlist li")).to_contain_text("rhino_horn")
        assert page.locator("#overlay rect.missed").count() == 1
        page.locator("#viewport").focus()
        page.keyboard.press("Shift+S")
        expect(page.locator("#verdictnow")).to_contain_text("seize")
        # reload: the decisions come back from the server
        page.reload()
        page.wait_for_selector("#detlist li.det:nth-child(1) .state.confirm")
        assert "rejected" in page.locator("#detlist li.det").nth(1).inner_text()
        assert "ana" in page.locator("#history").inner_text()
        expect(page.locator("#missedlist li")).to_contain_text("rhino_horn")
        expect(page.locator("#verdicts button.v-seize")).to_have_class(re.compile("active"))
        assert page.locator("#overlay rect.det.rejected").count() == 1
        assert not errors, errors

    # and the server, restarted on the same folder, still has them
    with serve(create_app(results_dir)) as url, browser_page() as page:
        page.goto(url + "/#/scan/tusk-0001")
        page.wait_for_selector("#detlist li.det:nth-child(2) .state.reject")
        assert "confirmed" in page.locator("#detlist li.det").nth(0).inner_text()

    from nii.review.store import DecisionStore

    hist = DecisionStore(results_dir / "nii-review.sqlite").history("tusk-0001")
    assert [(h["kind"], h["action"], h["detection_index"]) for h in hist] == [
        ("detection", "confirm", 0), ("detection", "reject", 1), ("missed", "add", None), ("verdict", "seize", None)
    ]
    x0, y0, x1, y1 = hist[2]["box"]
    assert abs(x0 - 20) < 2 and abs(y0 - 100) < 2 and abs(x1 - 60) < 2 and abs(y1 - 140) < 2
    assert {h["operator"] for h in hist} == {"ana"}


def test_browser_login_with_token(results_dir):
    _require_browser()
    from nii.review.app import create_app

    with serve(create_app(results_dir, token="browser-token-123")) as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#token", "browser-token-123")
        page.click("#loginform button[type=submit]")
        page.wait_for_selector("#queue li")
        assert page.locator("#queue li").count() == 2
