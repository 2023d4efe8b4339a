// Behaviour every page shares: focus the message that needs attention, confirm
// dialogs for destructive forms, and copy buttons. The pages work without it.

function focusFirstMessage() {
  const target = document.querySelector("[data-autofocus]");
  if (target) target.focus();
}

function confirmDestructiveForms() {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return;
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      document.getElementById("confirm-text").textContent = form.dataset.confirm;
      const opener = document.activeElement;
      dialog.returnValue = "";
      dialog.addEventListener(
        "close",
        () => {
          if (dialog.returnValue === "ok") form.submit();
          else if (opener instanceof HTMLElement) opener.focus();
        },
        { once: true },
      );
      dialog.showModal();
    });
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector("[data-copy-status]");
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (status) status.textContent = "Copied.";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Selected: press Ctrl+C to copy.";
      }
    });
  }
}

focusFirstMessage();
confirmDestructiveForms();
copyButtons();
