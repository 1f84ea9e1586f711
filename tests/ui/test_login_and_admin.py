"""Logging in and out, and the admin pages, in headless Chromium against the live portal:
what a person sees and can do, checked with axe for accessibility, with screenshots of each
page (artifacts/screenshots/)."""

from __future__ import annotations

import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from store.models import Lab, utcnow
from tests.integration.conftest import TOPOLOGIES
from tests.ui.conftest import (
    WAIT,
    assert_accessible,
    log_in,
    log_out,
    open_page,
    path_of,
    phone,
    screenshot,
)

pytestmark = pytest.mark.integration


def text_of(driver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def heading(driver) -> str:
    return text_of(driver, "h1")


def submit(driver, form_selector: str) -> None:
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, f"{form_selector} button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: old != d.find_element(By.TAG_NAME, "html"))


def test_the_login_page_is_accessible(driver):
    open_page(driver, "/login")
    assert heading(driver) == "Log in to LTB"
    assert_accessible(driver)
    screenshot(driver, "login")


def test_a_wrong_password_is_shown_next_to_the_form_and_stays_accessible(driver, make_user):
    student = make_user("student")
    log_in(driver, student, password="not the password")  # noqa: S106
    assert path_of(driver).startswith("/login")
    error = driver.find_element(By.ID, "login-error")
    assert error.text == "Wrong username or password"
    username = driver.find_element(By.ID, "username")
    assert username.get_attribute("aria-describedby") == "login-error"
    assert username.get_attribute("value") == student.username  # kept for the next try
    assert not driver.find_elements(By.CSS_SELECTOR, "form.logout")  # not logged in
    assert_accessible(driver)
    screenshot(driver, "login-wrong-password")


def test_logging_in_lands_on_the_dashboard_and_logging_out_ends_the_session(driver, make_user):
    student = make_user("student", display_name="Ada Student")
    log_in(driver, student)
    assert path_of(driver) == "/"
    assert heading(driver) == "Dashboard"
    assert "Ada Student (student)" in text_of(driver, "header .who")
    assert not driver.find_elements(By.LINK_TEXT, "Admin")  # admins only
    assert_accessible(driver)
    screenshot(driver, "dashboard")
    phone(driver)
    open_page(driver, "/")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the dashboard scrolls sideways by {overflow}px on a phone"
    screenshot(driver, "dashboard-phone")
    log_out(driver)
    open_page(driver, "/")
    assert path_of(driver) == "/login?next=/"  # the session has ended


@pytest.mark.parametrize(
    ("target", "lands_on"),
    [
        ("/admin/labs", "/admin/labs"),
        ("//evil.example/steal", "/"),
        ("https://evil.example/steal", "/"),
        ("/\\evil.example", None),  # a path of this site (%5C), whatever it shows
        ("/\t/evil.example", "/"),
    ],
)
def test_after_login_next_leads_only_to_a_page_of_this_site(driver, make_user, target, lands_on):
    admin = make_user("admin")
    open_page(driver, "/login")
    driver.execute_script("document.querySelector('input[name=next]').value = arguments[0]", target)
    driver.find_element(By.ID, "username").send_keys(admin.username)
    driver.find_element(By.ID, "password").send_keys(admin.password)
    submit(driver, "form")
    assert driver.current_url.startswith(driver.base_url + "/"), driver.current_url
    if lands_on:
        assert path_of(driver) == lands_on


def test_a_page_asked_for_before_logging_in_opens_after_it(driver, make_user):
    open_page(driver, "/admin/hypervisors")
    assert path_of(driver) == "/login?next=/admin/hypervisors"
    admin = make_user("admin")
    driver.find_element(By.ID, "username").send_keys(admin.username)
    driver.find_element(By.ID, "password").send_keys(admin.password)
    submit(driver, "form")
    assert path_of(driver) == "/admin/hypervisors"
    assert heading(driver) == "Hypervisors"


def test_admin_pages_are_accessible(driver, make_user):
    admin = make_user("admin")
    log_in(driver, admin)
    driver.find_element(By.LINK_TEXT, "Admin").click()
    for link, title, name in [
        ("Users", "Users", "admin-users"),
        ("Labs", "Labs of everyone", "admin-labs"),
        ("Failed jobs", "Failed jobs", "admin-jobs"),
        ("Hypervisors", "Hypervisors", "admin-hypervisors"),
    ]:
        driver.find_element(By.CSS_SELECTOR, "nav.subnav").find_element(By.LINK_TEXT, link).click()
        WebDriverWait(driver, WAIT).until(lambda d, title=title: heading(d) == title)
        assert_accessible(driver)
        screenshot(driver, name)


def test_admin_creates_and_disables_a_user_and_sees_refusals_next_to_the_field(driver, make_user):
    admin = make_user("admin")
    log_in(driver, admin, path="/login?next=/admin")
    name = f"u1-{uuid.uuid4().hex[:6]}"
    for attempt in range(2):
        driver.find_element(By.ID, "new-username").send_keys(name)
        driver.find_element(By.ID, "new-password").send_keys("a long password")
        submit(driver, "form[action='/admin/users']")
        if attempt == 0:
            assert heading(driver) == f"User {name}"
            assert text_of(driver, "[role=status]") == f"User {name} created (student)."
            open_page(driver, "/admin")
    # The second time the name is taken: said under the username, and the page stays usable.
    error = driver.find_element(By.ID, "new-username-error")
    assert error.text == f"User {name} exists already"
    assert driver.find_element(By.ID, "new-username").get_attribute("aria-invalid") == "true"
    assert_accessible(driver)
    screenshot(driver, "admin-users-refused")
    driver.find_element(By.ID, "q").send_keys(name)
    submit(driver, "form.inline")
    driver.find_element(By.LINK_TEXT, name).click()
    submit(driver, "form[action$='/disabled']")
    assert text_of(driver, "[role=status]") == f"User {name} disabled."
    assert driver.find_element(By.CSS_SELECTOR, "form[action$='/disabled'] button").text == (
        f"Enable {name}"
    )


def test_a_student_gets_the_404_page_for_another_students_lab_and_403_for_admin_pages(
    driver, make_user, store
):
    owner, other = make_user("student"), make_user("student")
    now = utcnow()
    with store() as session:
        lab = Lab(
            name=f"u1-{uuid.uuid4().hex[:8]}",
            owner_id=owner.id,
            title="Owner's lab",
            topology=(TOPOLOGIES / "pair.lab.yml").read_text(),
            state="running",
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
        )
        session.add(lab)
        session.commit()
        lab_id = lab.id
    # The lab exists: its owner sees it through the API.
    log_in(driver, owner)
    open_page(driver, f"/api/labs/{lab_id}")
    assert "Owner's lab" in driver.find_element(By.TAG_NAME, "body").text
    open_page(driver, "/")
    log_out(driver)

    log_in(driver, other)
    lab_page = f"/labs/{lab_id}" if "ui.lab" in driver.live_app.view_functions else None
    if lab_page:
        open_page(driver, lab_page)
        assert heading(driver) == "Not found"
        assert "Owner's lab" not in driver.page_source
        assert_accessible(driver)
        screenshot(driver, "not-found")
    open_page(driver, "/admin")
    assert heading(driver) == "Not allowed"
    assert "Your role may not use this page" in text_of(driver, "[role=alert]")
    assert_accessible(driver)
    screenshot(driver, "not-allowed")
