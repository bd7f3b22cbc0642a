// Runs first in <body>: marks the page as having JavaScript (what NHS.UK frontend's page template
// does with an inline script, which our Content-Security-Policy does not allow).
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' nhsuk-frontend-supported' : '');
