"""The quickstart in marimo: ``marimo edit notebooks/marimo_quickstart.py`` (or ``marimo run``).

``quickstart`` sees marimo, shows the dashboard with ``mo.ui.anywidget`` and returns at once: the
run trains in the background while the notebook stays usable.
"""

import marimo

app = marimo.App()


@app.cell
def _():
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset

    from onthefly import quickstart

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    session = quickstart(project="marimo", run_name="quickstart", model=model,
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn=nn.CrossEntropyLoss(),
                         train_loader=DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), max_epochs=200)
    return (session,)


@app.cell
def _(session):
    session.slice("loss > q95").head()  # the hardest samples so far, as a DataFrame
    return


if __name__ == "__main__":
    app.run()
