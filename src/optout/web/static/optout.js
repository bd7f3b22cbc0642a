// Progressive enhancement only: every page works with JavaScript off.
import { initAll } from './nhsuk/nhsuk-frontend.min.js'

initAll()

// A page that waits for something (a check against the check service) asks to be reloaded by
// carrying data-refresh-seconds on <main>; without JavaScript it has a "Check again" button.
const main = document.getElementById('maincontent')
const seconds = main && Number(main.dataset.refreshSeconds)
if (seconds > 0) {
  window.setTimeout(() => window.location.reload(), seconds * 1000)
}
