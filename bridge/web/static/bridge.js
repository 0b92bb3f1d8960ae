/* Telemed Bridge dashboard: tabs and live refresh. Small and local (no CDN); every page works
   without it: without script every tab panel shows, one after the other, and pages do not refresh. */
"use strict";

/* Tabs (WAI-ARIA tabs pattern): click or Enter selects, Left/Right/Home/End move between tabs.
   The selected tab is kept in the URL's #fragment, so a refresh or a shared link opens the same tab. */
function setUpTabs(list) {
  const tabs = Array.from(list.querySelectorAll("[role=tab]"));
  function select(tab, focus) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    history.replaceState(null, "", "#" + tab.getAttribute("aria-controls"));
  }
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const at = tabs.indexOf(tab);
      const next = {ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1}[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
  const wanted = tabs.find((t) => "#" + t.getAttribute("aria-controls") === location.hash);
  select(wanted || tabs[0], false);
}

/* Live pages ask for a refresh every N seconds (<meta name="bridge-refresh">). A refresh never takes
   away what the user is doing: it waits while a form field has focus or typed text, while text is
   selected, and while the tab is in the background; "Pause updates" stops it for this browser tab. */
function busy() {
  const active = document.activeElement;
  if (active && active.matches("input, textarea, select")) return true;
  for (const field of document.querySelectorAll("input:not([type=hidden]), textarea")) {
    if (field.type === "checkbox" ? field.checked !== field.defaultChecked : field.value !== field.defaultValue) {
      return true;
    }
  }
  return String(window.getSelection()) !== "" || document.hidden;
}

function setUpRefresh() {
  const seconds = Number(document.querySelector("meta[name=bridge-refresh]").content);
  const place = document.getElementById("refresh-state");
  if (!seconds || !place) return;
  const key = "bridge-refresh-paused";
  const button = document.createElement("button");
  button.type = "button";
  button.id = "refresh-toggle";
  function show() {
    const paused = sessionStorage.getItem(key) === "1";
    button.textContent = paused ? "Resume updates" : "Pause updates";
    place.firstChild.textContent = paused ? " · updates paused " : ` · updates every ${seconds} s `;
  }
  place.append(document.createTextNode(""), button);
  button.addEventListener("click", () => {
    sessionStorage.setItem(key, sessionStorage.getItem(key) === "1" ? "0" : "1");
    show();
  });
  show();
  setInterval(() => {
    if (sessionStorage.getItem(key) !== "1" && !busy()) location.reload();
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[role=tablist]").forEach(setUpTabs);
  setUpRefresh();
});
